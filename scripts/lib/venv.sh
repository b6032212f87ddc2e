# Sourced by the scripts in this folder: make sure .venv exists and holds
# the three packages (editable) and the test tools; then activate it.

find_python() {
    for candidate in "${PYFARM_PYTHON:-}" python3.13 python3.12 python3.11 \
            python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c \
                'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$candidate"
            return 0
        fi
    done
    echo "PyFarm needs Python 3.11 or newer; none was found on PATH" >&2
    return 1
}

ensure_venv() {
    local root stamp python
    root="$(pwd)"
    stamp="$root/.venv/.pyfarm-installed"
    if [ ! -x "$root/.venv/bin/python" ]; then
        python="$(find_python)"
        echo "creating $root/.venv with $python" >&2
        "$python" -m venv "$root/.venv"
    fi
    # Reinstall when a package's metadata changed since the last install.
    if [ ! -f "$stamp" ] || [ -n "$(find "$root"/pyfarm-*/pyproject.toml \
            "$root/requirements-dev.txt" -newer "$stamp" 2>/dev/null)" ]; then
        echo "installing PyFarm into $root/.venv" >&2
        "$root/.venv/bin/python" -m pip install --quiet --upgrade pip
        "$root/.venv/bin/python" -m pip install --quiet \
            -e "$root/pyfarm-core[test]" \
            -e "$root/pyfarm-master[test]" \
            -e "$root/pyfarm-agent[test]" \
            -r "$root/requirements-dev.txt"
        touch "$stamp"
    fi
    # shellcheck disable=SC1091
    . "$root/.venv/bin/activate"
}
