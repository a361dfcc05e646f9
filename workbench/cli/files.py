"""The commands about files rather than runs: `inspect`, `convert`, `twin` and `cache`.

`inspect` prints a GGUF or safetensors file's (or an HF directory's) metadata and
tensors, `convert` writes a requantized GGUF or an HF F32 directory, `twin` makes a shape
twin into the workbench cache, and `cache` shows or clears numba's compiled code. None of
them loads a model to run it.
"""

from __future__ import annotations

import json

from workbench.errors import ParameterError


def add_convert(sub) -> None:
    """`workbench convert SRC DST --to FORMAT`"""
    c = sub.add_parser("convert", help="convert a GGUF model: requantize it, or write an HF F32 directory")
    c.add_argument("src", help="GGUF file or catalog name")
    c.add_argument("dst", help="output file (gguf-*) or directory (hf-f32)")
    c.add_argument("--to", required=True, help="gguf-q8_0, gguf-q4_0, gguf-f16, gguf-f32 or hf-f32")
    c.add_argument("--overwrite", action="store_true", help="replace dst if it exists")
    c.add_argument("--json", action="store_true")


def add_inspect(sub) -> None:
    """`workbench inspect FILE|DIR`"""
    i = sub.add_parser("inspect", help="print a GGUF or safetensors file's (or an HF directory's) metadata and tensors; "
                                       "--kernels: the matvec kernels of each weight format on this CPU")
    i.add_argument("file", nargs="?", default=None, help="a file or directory (optional with --kernels)")
    i.add_argument("--kernels", action="store_true",
                   help="list every weight format's matvec variants, which one this CPU runs and what each needs "
                        "(with FILE: only the formats its tensors have)")
    i.add_argument("--json", action="store_true")


def add_cache(sub) -> None:
    """`workbench cache info|clear`"""
    k = sub.add_parser("cache", help="where numba's compiled code for workbench lives: info, or clear it")
    k.add_argument("action", choices=["info", "clear"])
    k.add_argument("--all", action="store_true", help="clear: also this version's code (recompiled on next use)")
    k.add_argument("--json", action="store_true")


def add_twin(sub) -> None:
    """`workbench twin NAME`"""
    w = sub.add_parser("twin", help="make a shape twin (random weights, real shapes) into the cache",
                       description="Shape twins of the models of rustml's trace report, for speed at real size; "
                                   "never for claims about text. Deterministic (fixed seed).")
    w.add_argument("name", help="tinyllama-1.1b, gemma3-1b or gpt2-124m")
    w.add_argument("--rebuild", action="store_true", help="make it again even when a cached copy matches")
    w.add_argument("--verify", action="store_true", help="check the cached files' sha256 (slow for GBs)")
    w.add_argument("--json", action="store_true")


def run_convert(args) -> int:
    from dataclasses import asdict

    from workbench.convert import convert_report

    try:
        r = convert_report(args.src, args.dst, args.to, progress=not args.json, overwrite=args.overwrite)
    except ParameterError as e:
        if e.param == "overwrite":
            raise ParameterError(f"{args.dst} already exists; pass --overwrite to replace it") from None
        raise
    if args.json:
        print(json.dumps(asdict(r), default=str))
        return 0
    formats = ", ".join(f"{n} {f.upper()}" for f, n in sorted(r.formats.items()))
    print(f"{r.source} -> {r.path} ({r.to}): {formats}; {r.bytes_written / 2**20:.1f} MiB in {r.seconds:.1f} s")
    for name, fmt in r.fallback.items():
        print(f"  {name}: kept as {fmt.upper()} (rows not a multiple of the block size)")
    return 0


def run_inspect(args) -> int:
    from pathlib import Path

    from workbench.errors import FormatError

    if args.kernels:
        return _print_kernels(args.file, args.json)
    if args.file is None:
        raise ParameterError("inspect needs a FILE (or --kernels)")
    path = Path(args.file)
    if path.is_dir():
        from workbench.formats.hf import HFDirectory

        hf = HFDirectory.open(path)
        info = {"metadata": {"model_type": hf.model_type, **{k: v for k, v in hf.config.items() if k != "model_type"}},
                "tensors": [{"name": n, "type": t.fmt.upper(), "shape": list(t.shape), "bytes": t.data.nbytes}
                            for n in sorted(hf.names) for t in [hf.tensor(n)]]}
        return _print_info(path, info, args.json)
    if not path.is_file():
        raise FormatError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        from workbench.formats.gguf import GGUFFile, describe

        info = describe(GGUFFile.open(path))
    else:
        from workbench.formats.safetensors_file import SafetensorsFile, describe

        info = describe(SafetensorsFile.open(path))
    return _print_info(path, info, args.json)


def _print_info(path, info: dict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(info, default=str))
        return 0
    print(f"{path}")
    for key, value in info.get("metadata", {}).items():
        print(f"  {key} = {value}")
    tensors = info.get("tensors", [])
    print(f"\n  {len(tensors)} tensors")
    for t in tensors:
        print(f"  {t['name']:<40} {t['type']:<6} {str(t['shape']):<20} {t.get('bytes') or 0:>12,}")
    return 0


def run_twin(args) -> int:
    from workbench.convert.twins import twin_files

    files = twin_files(args.name, progress=not args.json, rebuild=args.rebuild, verify=args.verify)
    if args.json:
        print(json.dumps({k: str(v) for k, v in files.items()}))
        return 0
    for kind, path in files.items():
        size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
        print(f"{kind:5} {path} ({size / 2**30:.2f} GiB); load it as twin:{args.name}"
              + (":gguf" if kind == "gguf" and "hf" in files else ""))
    return 0


def run_cache(args) -> int:
    from workbench.kernels import cache

    if args.action == "clear":
        removed = cache.clear(everything=args.all)
        print(json.dumps({"removed": removed}) if args.json else
              "\n".join(f"removed {p}" for p in removed) or "nothing to remove")
        return 0
    info = cache.info()
    if args.json:
        print(json.dumps(info))
    else:
        print(f"directory    {info['directory']}{'  (NUMBA_CACHE_DIR)' if info['user_set'] else ''}")
        print(f"entries      {info['index_files']} compiled functions, {info['data_files']} compiled versions")
        print(f"size         {info['bytes'] / 2**20:.1f} MiB")
        print(f"stale keys   {len(info['other_keys'])} (workbench cache clear removes them)")
    return 0


def _print_kernels(file: str | None, as_json: bool) -> int:
    """The table of weight formats as this CPU runs it: every matvec variant, what it
    needs, which one is chosen (and which is the registry's default now)."""
    from workbench.kernels import cache, dispatch
    from workbench.kernels.table import FORMATS, WEIGHT_FORMATS

    formats = list(WEIGHT_FORMATS)
    if file is not None:
        from workbench.formats.catalog import resolve
        from workbench.formats.gguf import GGUFFile, describe

        path = resolve(file)
        kinds = {t["type"].lower() for t in describe(GGUFFile.open(path))["tensors"]} if path.is_file() else set()
        formats = [f for f in formats if f in kinds] or formats
    rows = [row for f in formats for row in dispatch.describe_variants(f)]
    if as_json:
        print(json.dumps({"cpu": cache.cpu_name(), "variants": rows}))
        return 0
    print(f"matvec kernels on this CPU ({cache.cpu_name()}); * = chosen here, + = the default now if another, "
          "r = what a model loaded here runs instead, on weights repacked at load")
    for f in formats:
        row = FORMATS[f]
        print(f"  {f} (GGML type {row.ggml_type}, {row.block_size} in {row.type_size} bytes, x as {row.vec_dot})")
        for r in (r for r in rows if r["format"] == f):
            mark = "*" if r["chosen for this CPU"] else ("+" if r["default now"] else ("r" if r["repacked here"] else " "))
            needs = "" if r["needs"] == "-" else f" [needs {r['needs']}{'' if r['runs here'] else ': not here'}]"
            ref = " (reference)" if r["reference"] else ""
            print(f"   {mark} {r['variant']:<16} {r['summary']}{ref}{needs}")
    return 0
