#!/usr/bin/env bash
# Prepare this checkout to run or test qa; shared by `make serve` and `make test`.
#
#   1. the virtualenv .venv (created or reinstalled only when missing, broken, or pyproject.toml
#      changed since the last install: a stamp file holds the hash it was installed from);
#   2. torch==2.13.0 first (exactly that spec, so pip never pulls a CUDA build), then the package
#      editable with its test extra: pip install -e '.[test]';
#   3. EmbeddingGemma-300m through `qa models fetch` (downloads once, then only verifies: fast);
#   4. Debian's tesseract-ocr with eng, chi_sim and chi_tra data and fonts-wqy-microhei, when missing
#      (OCR of scanned pages; the font renders Chinese PDFs);
#   5. with --browser: Debian's chromium, chromium-driver and fonts-wqy-microhei, when missing;
#   6. with --office: Debian's libreoffice-writer-nogui (headless LibreOffice, about 263 MB), when missing:
#      `qa bench --parity` and its test lay the evaluation passages out as PDFs with it.
#
# Environment: PYTHON (interpreter to create the venv with; default python3.11, else python3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/.venv
STAMP=$VENV/.qa-setup-stamp
BROWSER=0
OFFICE=0

for arg in "$@"; do
  case "$arg" in
    --browser) BROWSER=1 ;;
    --office) OFFICE=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $arg (known: --browser, --office)" >&2; exit 2 ;;
  esac
done

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf '\nsetup.sh: %s\n' "$*" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
# pip's download bars only on a terminal; CI logs get pip's plain lines.
PIP_PROGRESS=(--progress-bar on)
if [ ! -t 1 ] || [ -n "${CI:-}" ]; then PIP_PROGRESS=(--progress-bar off); fi

# Run a command as root: directly, through sudo, or not at all (then say what to run).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "needs root to run: $*"
  fi
}

# apt-get install, running apt-get update first only if the install fails.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install these packages by hand: $*"
  if ! as_root apt-get install -y "$@"; then
    note "install failed; running apt-get update and trying again"
    as_root apt-get update
    as_root apt-get install -y "$@"
  fi
}

pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then echo "$candidate"; return; fi
  done
  die "no python3.11 or python3 on PATH"
}

fingerprint() {
  # What the venv was installed from: pyproject.toml and the interpreter it runs on.
  { cat pyproject.toml; "$VENV/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

# --------------------------------------------------------------------------------- 1. virtualenv
step "virtualenv ($VENV)"
if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys, pip' >/dev/null 2>&1; then
  note "the existing .venv does not run (or has no pip): recreating it"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  PY=$(pick_python)
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "$PY is Python $("$PY" -c 'import platform; print(platform.python_version())'); qa needs 3.10 or newer"
  note "creating it with $(command -v "$PY") ($("$PY" -c 'import platform; print(platform.python_version())'))"
  if ! "$PY" -m venv "$VENV" 2>/tmp/qa-venv-error.$$; then
    cat /tmp/qa-venv-error.$$ >&2
    rm -rf "$VENV" /tmp/qa-venv-error.$$
    # Debian ships venv/ensurepip separately from python3.
    ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    note "venv needs Debian's python$ver-venv; installing it"
    apt_install "python$ver-venv"
    "$PY" -m venv "$VENV"
  fi
  rm -f /tmp/qa-venv-error.$$
else
  note "exists ($("$VENV/bin/python" -c 'import platform; print(platform.python_version())'))"
fi

# --------------------------------------------------------------------------------- 2. packages
step "packages (torch==2.13.0, then pip install -e '.[test]')"
want=$(fingerprint)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  note "up to date (pyproject.toml unchanged since the last install)"
elif [ ! -f "$STAMP" ] && "$VENV/bin/python" scripts/check_venv.py >/dev/null 2>&1; then
  note "the existing venv already satisfies pyproject.toml: recording that, nothing to install"
  echo "$want" >"$STAMP"
else
  if [ -f "$STAMP" ]; then note "pyproject.toml changed since the last install"; fi
  "$VENV/bin/python" scripts/check_venv.py || true
  rm -f "$STAMP"
  # Exactly this spec: any other (a range, the +cpu local version, an extra index) can pull CUDA.
  "$VENV/bin/python" -m pip install "${PIP_PROGRESS[@]}" "torch==2.13.0"
  "$VENV/bin/python" -m pip install "${PIP_PROGRESS[@]}" -e '.[test]'
  "$VENV/bin/python" scripts/check_venv.py || die "the venv still does not satisfy pyproject.toml (see above)"
  echo "$want" >"$STAMP"
  note "installed"
fi

# --------------------------------------------------------------------------------- 3. model
step "EmbeddingGemma-300m (qa models fetch: downloads once, then verifies)"
"$VENV/bin/qa" models fetch

# --------------------------------------------------------------------------------- 4. OCR and fonts
step "Tesseract OCR (eng, chi_sim, chi_tra) and CJK fonts for scanned pages"
missing=()
# libgl1 and libglib2.0-0: OpenCV (under RapidOCR) loads libGL.so.1 and libgthread at import
for pkg in tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim tesseract-ocr-chi-tra fonts-wqy-microhei libgl1 \
           libglib2.0-0; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  note "present: $(tesseract --version 2>&1 | head -1)"
else
  note "installing ${missing[*]}"
  apt_install --no-install-recommends "${missing[@]}"
fi

# --------------------------------------------------------------------------------- 5. browser
if [ "$BROWSER" = 1 ]; then
  step "Chromium and CJK fonts for the browser tests"
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  dpkg-query -W -f='${Status}' fonts-wqy-microhei 2>/dev/null | grep -q "install ok installed" \
    || missing+=(fonts-wqy-microhei)
  if [ ${#missing[@]} -eq 0 ]; then
    note "present: $(chromium --version 2>/dev/null || echo chromium)"
  else
    note "installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
fi

# --------------------------------------------------------------------------------- 6. LibreOffice
if [ "$OFFICE" = 1 ]; then
  step "LibreOffice Writer, headless (qa bench --parity: DOCX to PDF)"
  if command -v soffice >/dev/null 2>&1; then
    note "present: $(soffice --version 2>/dev/null | head -1)"
  else
    note "installing libreoffice-writer-nogui (about 263 MB)"
    apt_install --no-install-recommends libreoffice-writer-nogui
  fi
fi

step "setup done"
