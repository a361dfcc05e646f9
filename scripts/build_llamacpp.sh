#!/usr/bin/env bash
# Build the benchmark peer: llama.cpp as vendored in llama-cpp-python's source archive,
# for the CPU it is built on, and install it into a virtual environment.
#
#   scripts/build_llamacpp.sh VENV
#
# What it leaves behind:
#   VENV/llama.cpp/bin/llama-bench      llama.cpp's own benchmark (workbench bench --peer)
#   VENV/llama.cpp/bin/llama-quantize   makes the Q5_1 / IQ4_NL / Q5_K_M test files (scripts/make_quant_files.py)
#   VENV/llama.cpp/lib/lib*.so*         libllama, libggml*, ... (rpath $ORIGIN)
#   VENV/llama.cpp/build.json           what was built: version, commit, compiler, flags, CPU
#   llama-cpp-python in VENV            the Python binding (golden scripts, notebook 06),
#                                       its own build switched off: it loads the libraries
#                                       above, copied into its package, so both are one build
#
# The build is native (GGML_NATIVE: -march=native) and so includes llama.cpp's AMX code on
# CPUs with AMX. GCC 12 miscompiles that code: in ggml_tile_config_init (amx/mmq.cpp) it
# drops the stores that fill the tile configuration before _tile_loadconfig reads it, and
# batched decode then dies (SIGILL/SIGSEGV). The patch step below puts an empty asm
# statement there that takes the configuration's address and clobbers memory, so the
# compiler must finish the stores first. The patch changes no generated code on CPUs
# without AMX (the file compiles to nothing there).
#
# Only the targets needed are built (llama-bench pulls llama, ggml and the common library),
# with -j${JOBS:-2}. The source archive comes from PyPI (pip download), never GitHub; the
# build tree is kept under ${WORKBENCH_CACHE:-~/.cache/workbench}/llama.cpp-build so that
# a rebuild (another CPU) recompiles only.
set -euo pipefail

VENV=${1:?usage: scripts/build_llamacpp.sh VENV}
VERSION=0.3.36
JOBS=${JOBS:-2}
VENV=$(cd "$VENV" && pwd)
PY="$VENV/bin/python"
CACHE=${WORKBENCH_CACHE:-$HOME/.cache/workbench}
WORK="$CACHE/llama.cpp-build/$VERSION"
PREFIX="$VENV/llama.cpp"
SDIST="$WORK/llama_cpp_python-$VERSION.tar.gz"
SRC="$WORK/llama_cpp_python-$VERSION"
LLAMA="$SRC/vendor/llama.cpp"
BUILD="$WORK/build"
mkdir -p "$WORK"

# 1. the source archive, from PyPI
if [ ! -f "$SDIST" ]; then
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$WORK" "llama-cpp-python==$VERSION"
fi
if [ ! -d "$SRC" ]; then
    tar -xzf "$SDIST" -C "$WORK"
fi

# 2. the GCC 12 AMX workaround (idempotent: the marker says it is applied)
MMQ="$LLAMA/ggml/src/ggml-cpu/amx/mmq.cpp"
MARK="workbench: keep the tile configuration's stores"
if ! grep -q "$MARK" "$MMQ"; then
    count=$(grep -c '^ *_tile_loadconfig(&tc);' "$MMQ" || true)
    if [ "$count" != 1 ]; then
        echo "build_llamacpp: expected one '_tile_loadconfig(&tc);' in $MMQ, found $count" >&2
        exit 1
    fi
    "$PY" - "$MMQ" "$MARK" <<'EOF'
import sys
path, mark = sys.argv[1], sys.argv[2]
text = open(path).read()
call = "    _tile_loadconfig(&tc);"
barrier = ("    // " + mark + ": GCC 12 otherwise drops them and the tiles load garbage\n"
           '    asm volatile("" : : "r"(&tc) : "memory");\n')
open(path, "w").write(text.replace(call, barrier + call, 1))
EOF
fi

# 3. configure and build llama-bench and the shared libraries (cmake and ninja from PyPI
#    when the machine has no cmake; Make when it has no ninja)
CC=${CC:-gcc}
CXX=${CXX:-g++}
if ! command -v cmake >/dev/null 2>&1; then
    "$PY" -m pip install -q cmake ninja
    export PATH="$VENV/bin:$PATH"
fi
GENERATOR=()
if command -v ninja >/dev/null 2>&1; then
    GENERATOR=(-G Ninja)
fi
cmake -S "$LLAMA" -B "$BUILD" "${GENERATOR[@]}" \
    -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON '-DCMAKE_INSTALL_RPATH=$ORIGIN;$ORIGIN/../lib' \
    >"$WORK/configure.log" 2>&1 || { tail -30 "$WORK/configure.log" >&2; exit 1; }
cmake --build "$BUILD" --target llama-bench llama-quantize -j "$JOBS" >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log" >&2; exit 1; }

# 4. install: binaries and libraries side by side with the venv, then the record
rm -rf "$PREFIX.partial"
mkdir -p "$PREFIX.partial/bin" "$PREFIX.partial/lib"
cp -a "$BUILD/bin/llama-bench" "$BUILD/bin/llama-quantize" "$PREFIX.partial/bin/"
cp -a "$BUILD"/bin/lib*.so* "$PREFIX.partial/lib/"
AMX=$("$CXX" -march=native -dM -E -x c++ /dev/null | grep -c '__AMX_INT8__' || true)
"$PY" - "$PREFIX.partial/build.json" "$VERSION" "$SRC" "$CXX" "$AMX" "$MARK" <<'EOF'
import datetime, json, re, subprocess, sys
out, version, src, cxx, amx, mark = sys.argv[1:]
changelog = open(f"{src}/CHANGELOG.md").read()
# the llama.cpp commit this release vendors, as its changelog names it
section = changelog.split(f"## [{version}]", 1)[-1].split("\n## [", 1)[0]
commit = re.search(r"llama\.cpp@([0-9a-f]{7,40})", section)
compiler = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
flags = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("flags"):
        flags = line.split(":", 1)[1].split()
        break
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
mmq = open(f"{src}/vendor/llama.cpp/ggml/src/ggml-cpu/amx/mmq.cpp").read()
record = {
    "llama_cpp_python": version,
    "llama_cpp_commit": commit.group(1) if commit else "unknown",
    "compiler": compiler,
    "flags": "GGML_NATIVE=ON (-march=native), Release, shared libraries",
    "amx": amx != "0",
    "amx_patch": mark in mmq,
    "cpu": model,
    "cpu_flags": sorted(flags),
    "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
}
json.dump(record, open(out, "w"), indent=1)
EOF
rm -rf "$PREFIX"
mv "$PREFIX.partial" "$PREFIX"

# 5. llama-cpp-python from the same archive, with its own build off, then our libraries
CMAKE_ARGS="-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF" \
    "$PY" -m pip install -q --no-cache-dir --force-reinstall --no-deps "$SDIST"
"$PY" -m pip install -q "typing-extensions>=4.5" "diskcache>=5.6.1" "jinja2>=2.11.3"
PKG=$("$PY" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("llama_cpp").origin))')
mkdir -p "$PKG/lib"
rm -f "$PKG"/lib/lib*.so*
cp -a "$PREFIX"/lib/lib*.so* "$PKG/lib/"
echo "llama.cpp ($VERSION's tree) built into $PREFIX"
