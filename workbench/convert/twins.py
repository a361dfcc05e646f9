"""Shape twins: random weights with the real shapes and formats of the models of rustml's
trace report, for measuring speed at real size (never for claims about text).

    path = twin("tinyllama-1.1b")           # made into the cache on first use
    files = twin_files("gemma3-1b")          # {"hf": dir, "gguf": file}
    workbench.load("twin:gemma3-1b")         # the HF directory; "twin:gemma3-1b:gguf" the GGUF

Contract: `TWINS` names three specs, each a `TwinSpec` (architecture, shape, formats,
tokenizer source, seed):
- `tinyllama-1.1b`: Llama, GGUF Q4_0 (every matrix, as `gguf_out`'s rule), 22 layers,
  d 2048, FFN 5632, 32 heads / 4 KV, vocab 32000, untied output;
- `gemma3-1b`: Gemma 3, an HF safetensors F32 directory and the same weights as GGUF F32;
  26 layers, d 1152, FFN 6912, 4 heads / 1 KV, head dim 256, vocab 262144, window 512,
  every sixth layer global, tied embeddings;
- `gpt2-124m`: GPT-2, an HF safetensors F32 directory and the same weights as GGUF F32;
  12 layers, d 768, 12 heads, vocab 50257, 1024 positions, tied embeddings.
The first format is what `twin:NAME` loads; `twin:NAME:gguf` is always the GGUF file
(the one llama.cpp runs).

`build_twin(spec, out)` writes a spec's files into the empty directory `out`; it is the
only code path, and tests run it on small specs (`TwinSpec.scaled`). Weights come from
`numpy.random.default_rng([seed, tensor index])`, so a twin is the same bytes on every
machine: matrices ~ N(0, 1/fan_in) (each product keeps the scale of its input), norms 1,
biases 0, token embeddings small (0.02, and 0.002 for Gemma's, which the model multiplies
by sqrt(d)) so that a tied lm_head does not simply echo the last token: activations stay
finite and greedy output is not one repeated token. The GGUF is written first (F32, or
Q4_0 with the reference quantizer); the HF directory of Llama/Gemma comes from it through
`hf_out.write_hf`, GPT-2's through `_write_gpt2_hf` (Conv1D layout, vocab.json, merges.txt).

Tokenizers are real ones fitted to the vocabulary size (`fit_vocab`): Gemma 3 270M's
SentencePiece vocabulary (exactly 262144) from its GGUF, SmolLM2's byte-level BPE cut to
its first 32000 tokens (merges that would make a dropped token are dropped) for the
TinyLlama twin, and GPT-2's own BPE from `data/tiny-gpt2` (its first 1000 merges) padded
with unused tokens to 50256, `<|endoftext|>` at 50256 as in GPT-2.

`twin(name)` keeps each twin in `catalog.cache_dir() / "twins" / NAME/` with a sidecar
`NAME.json` (spec, `TWIN_VERSION`, size and sha256 of every file). The directory appears
whole or not at all (built under `.NAME.partial-PID`, renamed into place), a lock file
serializes processes making the same twin, and a cached twin is reused when its sidecar
matches the spec, the version and the files' sizes. It does not hash multi-GB files on
every load (`verify=True` does); a damaged twin is remade by `twin(name, rebuild=True)`.
Measured here: tinyllama-1.1b takes ~1.5 min (the reference Q4_0 quantizer) and 0.6 GB
of disk, gpt2-124m 10 s and 0.9 GB, gemma3-1b ~2 min, 7.5 GB of disk and ~8 GB of memory
(the HF writer holds the whole F32 model while it serializes).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from tqdm.auto import tqdm

from workbench.convert.core import ConvertError, _install
from workbench.convert.gguf_out import add_tensor_info
from workbench.convert.hf_out import _write_json, write_hf
from workbench.formats.catalog import ModelNotFoundError, cache_dir, resolve
from workbench.formats.files import locked, remove, sha256
from workbench.formats.gguf import GGUFFile
from workbench.quant.reference import quantize_ref

# Bumped whenever the bytes a twin is made of change, so that cached twins are remade.
TWIN_VERSION = 1
NORMAL, CONTROL, UNUSED = 1, 3, 5  # llama_token_type
_DATA = Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True)
class TwinSpec:
    name: str
    arch: str  # GGUF architecture: llama, gemma3, gpt2
    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    context: int
    formats: tuple[str, ...]  # "gguf-q4_0" / "gguf-f32" / "hf-f32"; the first is what twin:NAME loads
    tokenizer: str  # "smollm2-135m", "gemma3-270m" or "tiny-gpt2"
    window: int = 0  # Gemma: sliding window; every `global_every`-th layer is global
    global_every: int = 6
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    tied: bool = True
    seed: int = 0

    def scaled(self, **shape) -> TwinSpec:
        """The same spec with some fields changed (small twins for tests)."""
        return dataclasses.replace(self, **shape)

    @property
    def gguf_format(self) -> str:
        return next(f for f in self.formats if f.startswith("gguf-")).removeprefix("gguf-")


TWINS = {
    "tinyllama-1.1b": TwinSpec("tinyllama-1.1b", "llama", 22, 2048, 5632, 32, 4, 64, 32000, 2048,
                               ("gguf-q4_0",), "smollm2-135m", tied=False),
    "gemma3-1b": TwinSpec("gemma3-1b", "gemma3", 26, 1152, 6912, 4, 1, 256, 262144, 32768,
                          ("hf-f32", "gguf-f32"), "gemma3-270m", window=512, rope_base=1e6, norm_eps=1e-6),
    "gpt2-124m": TwinSpec("gpt2-124m", "gpt2", 12, 768, 3072, 12, 12, 64, 50257, 1024,
                          ("hf-f32", "gguf-f32"), "tiny-gpt2"),
}


# -- the cache ----------------------------------------------------------------------

def twin_dir(name: str) -> Path:
    return cache_dir() / "twins" / _check(name)


def twin_files(name: str, *, progress: bool = True, rebuild: bool = False, verify: bool = False) -> dict[str, Path]:
    """{"gguf": file, "hf": directory (when the twin has one)} of twin `name`, made now
    unless a matching copy is cached."""
    spec = TWINS[_check(name)]
    out = twin_dir(name)
    sidecar = out.with_name(out.name + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    with locked(out.with_name(f".{out.name}.lock")):
        if rebuild or not _cached(out, sidecar, spec, verify):
            sidecar.unlink(missing_ok=True)
            partial = out.parent / f".{out.name}.partial-{os.getpid()}"
            start = time.perf_counter()
            try:
                remove(partial)
                partial.mkdir()
                build_twin(spec, partial, progress=progress)
                _install(partial, out)
            except OSError as e:
                raise ConvertError(f"making twin {name} in {out} failed: {e}") from None
            finally:
                remove(partial)
            record = {"twin": spec.name, "twin_version": TWIN_VERSION, "spec": _spec_record(spec),
                      "files": {p.relative_to(out.parent).as_posix(): {"size": p.stat().st_size, "sha256": sha256(p)}
                                for p in sorted(out.rglob("*")) if p.is_file()},
                      "seconds": round(time.perf_counter() - start, 1)}
            tmp = sidecar.with_name(f".{sidecar.name}.partial-{os.getpid()}")
            tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, sidecar)
    return _layout(spec, out)


def twin(name: str, kind: str | None = None, **kwargs) -> Path:
    """Path of twin `name`: its first format (`kind` None) or "gguf" / "hf"."""
    files = twin_files(name, **kwargs)
    spec = TWINS[_check(name)]
    kind = kind or ("hf" if spec.formats[0] == "hf-f32" else "gguf")
    if kind not in files:
        raise ModelNotFoundError(f"twin {name} has no {kind!r} form (it has {', '.join(files)})")
    return files[kind]


def from_source(text: str) -> Path:
    """`twin:NAME` or `twin:NAME:gguf` (what `workbench.load` is given) -> its path."""
    _, _, rest = text.partition(":")
    name, _, kind = rest.partition(":")
    if kind not in ("", "gguf", "hf"):
        raise ModelNotFoundError(f"{text!r}: a twin is twin:NAME or twin:NAME:gguf (or :hf), not :{kind}")
    return twin(name, kind or None)


def gguf_twin(path: str | os.PathLike) -> Path | None:
    """The GGUF file holding the same weights as the twin HF directory `path`, else None."""
    path = Path(path)
    files = {p.name: p for p in path.parent.glob("*.gguf")} if (path / "config.json").is_file() else {}
    sidecar = path.parent.with_name(path.parent.name + ".json")
    if path.name != "hf-f32" or not sidecar.is_file() or len(files) != 1:
        return None
    return next(iter(files.values()))


def _layout(spec: TwinSpec, out: Path) -> dict[str, Path]:
    files = {"gguf": out / f"{spec.name}-{spec.gguf_format}.gguf"}
    if "hf-f32" in spec.formats:
        files["hf"] = out / "hf-f32"
    return files


def _spec_record(spec: TwinSpec) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(spec).items()}


def _cached(out: Path, sidecar: Path, spec: TwinSpec, verify: bool) -> bool:
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        if record["twin_version"] != TWIN_VERSION or record["spec"] != _spec_record(spec):
            return False
        for rel, want in record["files"].items():
            p = out.parent / rel
            if ".." in Path(rel).parts or not p.is_file() or p.stat().st_size != want["size"]:
                return False
            if verify and sha256(p) != want["sha256"]:
                return False
        return all(p.exists() for p in _layout(spec, out).values())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _check(name: str) -> str:
    key = str(name).strip().lower()
    if key in TWINS:
        return key
    close = difflib.get_close_matches(key, list(TWINS), n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ModelNotFoundError(f"twin {name!r} is unknown; twins are {', '.join(TWINS)}{hint}")


# -- making one ---------------------------------------------------------------------

def build_twin(spec: TwinSpec, out: Path, *, progress: bool = False) -> dict[str, Path]:
    """Write the files of `spec` into the existing directory `out`: the GGUF, then the HF
    directory (when the spec has one) from the GGUF's weights."""
    files = _layout(spec, out)
    tok = fit_vocab(_tokenizer_metadata(spec.tokenizer), spec.vocab)
    _write_gguf(spec, files["gguf"], tok, progress)
    if "hf" in files:
        files["hf"].mkdir()
        if spec.arch == "gpt2":
            _write_gpt2_hf(spec, files["gguf"], files["hf"], tok)
        else:
            gf = GGUFFile.open(files["gguf"])
            try:
                write_hf(gf, files["hf"], progress)
            finally:
                gf.close()
    return files


def tensor_shapes(spec: TwinSpec) -> dict[str, tuple[int, ...]]:
    """GGUF tensor name -> numpy shape (out, in) of every tensor of `spec`, in file order."""
    d, f, hd, v = spec.d_model, spec.d_ff, spec.head_dim, spec.vocab
    q, kv = spec.n_heads * hd, spec.n_kv_heads * hd
    shapes = {"token_embd.weight": (v, d)}
    if spec.arch == "gpt2":
        shapes["position_embd.weight"] = (spec.context, d)
    for i in range(spec.n_layers):
        b = f"blk.{i}."
        if spec.arch == "gpt2":
            layer = {"attn_norm.weight": (d,), "attn_norm.bias": (d,), "attn_qkv.weight": (3 * d, d),
                     "attn_qkv.bias": (3 * d,), "attn_output.weight": (d, d), "attn_output.bias": (d,),
                     "ffn_norm.weight": (d,), "ffn_norm.bias": (d,), "ffn_up.weight": (f, d), "ffn_up.bias": (f,),
                     "ffn_down.weight": (d, f), "ffn_down.bias": (d,)}
        else:
            layer = {"attn_norm.weight": (d,), "attn_q.weight": (q, d), "attn_k.weight": (kv, d),
                     "attn_v.weight": (kv, d)}
            if spec.arch == "gemma3":
                layer |= {"attn_q_norm.weight": (hd,), "attn_k_norm.weight": (hd,)}
            layer["attn_output.weight"] = (d, q)
            if spec.arch == "gemma3":
                layer["post_attention_norm.weight"] = (d,)
            layer |= {"ffn_norm.weight": (d,), "ffn_gate.weight": (f, d), "ffn_up.weight": (f, d),
                      "ffn_down.weight": (d, f)}
            if spec.arch == "gemma3":
                layer["post_ffw_norm.weight"] = (d,)
        shapes |= {b + k: s for k, s in layer.items()}
    shapes["output_norm.weight"] = (d,)
    if spec.arch == "gpt2":
        shapes["output_norm.bias"] = (d,)
    if not spec.tied:
        shapes["output.weight"] = (v, d)
    return shapes


def make_tensor(spec: TwinSpec, index: int, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Tensor `index` of `spec`, float32, from its own seeded generator."""
    if len(shape) == 1:  # norms 1 (Gemma's GGUF holds 1 + w, so w = 0), biases 0
        return np.ones(shape, np.float32) if name.endswith("norm.weight") else np.zeros(shape, np.float32)
    rng = np.random.default_rng([spec.seed, index])
    x = rng.standard_normal(shape, dtype=np.float32)
    if name in ("token_embd.weight", "position_embd.weight"):
        x *= np.float32(0.002 if spec.arch == "gemma3" else 0.02)
    else:
        x *= np.float32(1.0 / np.sqrt(shape[1]))
    return x


def _write_gguf(spec: TwinSpec, path: Path, tok: dict, progress: bool) -> None:
    fmt = spec.gguf_format
    writer = gguf.GGUFWriter(path, spec.arch)
    try:
        writer.add_name(f"{spec.name} shape twin (random weights, seed {spec.seed})")
        for key, (value, kind, sub) in (_arch_metadata(spec) | tok).items():
            writer.add_key_value(key, value, kind, sub_type=sub)
        writer.add_file_type(2 if fmt == "q4_0" else 0)  # llama_ftype MOSTLY_Q4_0 / ALL_F32
        if fmt != "f32":
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        shapes = tensor_shapes(spec)
        plan = {name: ("f32" if len(s) == 1 else fmt) for name, s in shapes.items()}
        for name, shape in shapes.items():
            add_tensor_info(writer, name, shape, plan[name])
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        with tqdm(total=len(shapes), unit="tensor", desc=f"twin {spec.name}", disable=None if progress else True,
                  leave=False) as bar:
            for i, (name, shape) in enumerate(shapes.items()):
                x = make_tensor(spec, i, name, shape)
                writer.write_tensor_data(x if plan[name] == "f32" else quantize_ref(plan[name], x))
                bar.update()
    finally:
        writer.close()


def _kv(value, kind: str, sub: str | None = None) -> tuple:
    return (value, gguf.GGUFValueType[kind], gguf.GGUFValueType[sub] if sub else None)


def _arch_metadata(spec: TwinSpec) -> dict:
    p = spec.arch + "."
    meta = {p + "context_length": _kv(spec.context, "UINT32"), p + "embedding_length": _kv(spec.d_model, "UINT32"),
            p + "block_count": _kv(spec.n_layers, "UINT32"), p + "feed_forward_length": _kv(spec.d_ff, "UINT32"),
            p + "attention.head_count": _kv(spec.n_heads, "UINT32")}
    if spec.arch == "gpt2":
        return meta | {p + "attention.layer_norm_epsilon": _kv(spec.norm_eps, "FLOAT32")}
    meta |= {p + "attention.head_count_kv": _kv(spec.n_kv_heads, "UINT32"),
             p + "attention.layer_norm_rms_epsilon": _kv(spec.norm_eps, "FLOAT32"),
             p + "rope.freq_base": _kv(spec.rope_base, "FLOAT32")}
    if spec.arch == "llama":
        return meta | {p + "rope.dimension_count": _kv(spec.head_dim, "UINT32"),
                       p + "vocab_size": _kv(spec.vocab, "UINT32")}
    # Gemma 3: llama.cpp derives the global layers (every 6th) and the local rope base
    return meta | {p + "attention.key_length": _kv(spec.head_dim, "UINT32"),
                   p + "attention.value_length": _kv(spec.head_dim, "UINT32"),
                   p + "attention.sliding_window": _kv(spec.window, "UINT32")}


# -- tokenizers ---------------------------------------------------------------------

def _tokenizer_metadata(source: str) -> dict:
    """The tokenizer.* metadata of a real tokenizer, as {key: (value, type, subtype)}."""
    if source == "tiny-gpt2":
        vocab = json.loads((_DATA / "tiny-gpt2" / "vocab.json").read_text(encoding="utf-8"))
        merges = [m for m in (_DATA / "tiny-gpt2" / "merges.txt").read_text(encoding="utf-8").splitlines()
                  if m and not m.startswith("#version")]
        tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
        types = [CONTROL if t == "<|endoftext|>" else NORMAL for t in tokens]
        eos = tokens.index("<|endoftext|>")
        return {"tokenizer.ggml.model": _kv("gpt2", "STRING"), "tokenizer.ggml.pre": _kv("gpt-2", "STRING"),
                "tokenizer.ggml.tokens": _kv(tokens, "ARRAY", "STRING"),
                "tokenizer.ggml.token_type": _kv(types, "ARRAY", "INT32"),
                "tokenizer.ggml.merges": _kv(merges, "ARRAY", "STRING"),
                "tokenizer.ggml.bos_token_id": _kv(eos, "UINT32"), "tokenizer.ggml.eos_token_id": _kv(eos, "UINT32")}
    gf = GGUFFile.open(resolve(source))
    try:
        out = {}
        for key, value in gf.metadata.items():
            if not key.startswith("tokenizer."):
                continue
            kind = gf.metadata_types[key]
            if kind.startswith("ARRAY["):
                sub = kind[len("ARRAY["):-1]
                out[key] = _kv(value.tolist() if isinstance(value, np.ndarray) else list(value), "ARRAY", sub)
            else:
                out[key] = _kv(value, kind)
        return out
    finally:
        gf.close()


def fit_vocab(meta: dict, n: int) -> dict:
    """Tokenizer metadata fitted to exactly `n` tokens: cut to the first n (a BPE keeps the
    merges whose parts and result survive; special token ids must be below n), or padded
    with unused tokens `<|unused_I|>`. A GPT-2 style vocabulary whose last token is
    `<|endoftext|>` keeps it last, as GPT-2 does."""
    meta = dict(meta)
    tokens = list(meta["tokenizer.ggml.tokens"][0])
    types = list(meta.get("tokenizer.ggml.token_type", ([NORMAL] * len(tokens),))[0])
    scores = list(meta["tokenizer.ggml.scores"][0]) if "tokenizer.ggml.scores" in meta else None
    moved = {}
    if n > len(tokens) and tokens[-1] == "<|endoftext|>":
        moved = {len(tokens) - 1: n - 1}
        last = (tokens.pop(), types.pop(), scores.pop() if scores else None)
    else:
        last = None
    if n < len(tokens):
        tokens, types = tokens[:n], types[:n]
        scores = scores[:n] if scores else None
    while len(tokens) < n - (last is not None):
        tokens.append(f"<|unused_{len(tokens)}|>")
        types.append(UNUSED)
        if scores is not None:
            scores.append(-1e9)
    if last is not None:
        tokens.append(last[0])
        types.append(last[1])
        if scores is not None:
            scores.append(last[2])
    meta["tokenizer.ggml.tokens"] = _kv(tokens, "ARRAY", "STRING")
    meta["tokenizer.ggml.token_type"] = _kv(types, "ARRAY", "INT32")
    if scores is not None:
        meta["tokenizer.ggml.scores"] = _kv(scores, "ARRAY", "FLOAT32")
    if "tokenizer.ggml.merges" in meta:
        known = set(tokens)
        merges = [m for m in meta["tokenizer.ggml.merges"][0]
                  if all(part in known for part in m.split(" ")) and m.replace(" ", "") in known]
        meta["tokenizer.ggml.merges"] = _kv(merges, "ARRAY", "STRING")
    for key in [k for k in meta if k.endswith("_token_id")]:
        value = moved.get(int(meta[key][0]), int(meta[key][0]))
        if value >= n:
            raise ModelNotFoundError(f"{key} {value} does not fit a vocabulary of {n} tokens")
        meta[key] = _kv(value, "UINT32")
    return meta


# -- GPT-2 as an HF directory ---------------------------------------------------------

_GPT2_HF = {"token_embd.weight": "wte.weight", "position_embd.weight": "wpe.weight",
            "output_norm.weight": "ln_f.weight", "output_norm.bias": "ln_f.bias",
            "attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj", "ffn_norm": "ln_2",
            "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}


def _write_gpt2_hf(spec: TwinSpec, gguf_path: Path, out: Path, tok: dict) -> None:
    """config.json, model.safetensors (Conv1D matrices stored (in, out)), vocab.json and
    merges.txt of the GPT-2 twin, from the weights of its GGUF."""
    from safetensors.numpy import save_file

    gf = GGUFFile.open(gguf_path)
    try:
        tensors = {}
        for name, info in gf.tensors.items():
            x = np.array(gf.raw(name)).view(np.float32).reshape(info.numpy_shape)
            if name.startswith("blk."):
                _, i, op, kind = name.split(".")
                hf = f"h.{i}.{_GPT2_HF[op]}.{kind}"
                if kind == "weight" and x.ndim == 2:
                    x = x.T  # GPT-2's Conv1D keeps (in, out)
            else:
                hf = _GPT2_HF[name]
            tensors["transformer." + hf] = np.ascontiguousarray(x)
        save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    finally:
        gf.close()
    os.chmod(out / "model.safetensors", 0o644)
    tokens = tok["tokenizer.ggml.tokens"][0]
    eos = int(tok["tokenizer.ggml.eos_token_id"][0])
    _write_json(out / "config.json", {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
        "n_layer": spec.n_layers, "n_embd": spec.d_model, "n_head": spec.n_heads, "n_inner": spec.d_ff,
        "n_positions": spec.context, "vocab_size": spec.vocab, "layer_norm_epsilon": spec.norm_eps,
        "bos_token_id": eos, "eos_token_id": eos, "tie_word_embeddings": True, "scale_attn_weights": True,
        "dtype": "float32", "torch_dtype": "float32"})
    _write_json(out / "generation_config.json", {"bos_token_id": eos, "eos_token_id": eos})
    _write_json(out / "vocab.json", {t: i for i, t in enumerate(tokens)})
    merges = tok["tokenizer.ggml.merges"][0]
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(m + "\n" for m in merges), encoding="utf-8")
