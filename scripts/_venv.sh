# Shared by scripts/serve and scripts/test: make .venv and install cdrhub into it when needed.
# Reinstalls only when pyproject.toml (or the requested extras) changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="$1"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
    echo "cdrhub: creating virtualenv in $venv" >&2
    "$python" -m venv "$venv"
fi
stamp="$venv/.cdrhub-install"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "cdrhub: installing cdrhub[$extras] into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$root[$extras]"
    echo "$want" > "$stamp"
fi
