#!/usr/bin/env bash
# Install what the build and the test suite need, only if missing (idempotent; a no-op
# on a machine that has everything). Called by scripts/test; safe to run by hand.
#
#   Debian packages  krb5-kdc krb5-admin-server krb5-user  (MIT KDC + tools for the test realm)
#                    libkrb5-dev libclang-dev pkg-config   (building libgssapi-sys)
#                    curl python3-pip                      (test clients)
#                    samba samba-ad-dc samba-ad-provision  (the Samba AD DC fixture:
#                    winbind libwbclient-dev ldap-utils     PAC groups, LDAP, NTLM via winbind)
#                    chromium chromium-driver               (the browser SSO test, headless)
#   Python modules   gssapi requests-gssapi pyspnego krb5 requests-ntlm (test clients;
#                    `krb5` is pyspnego's Kerberos extra: without it pyspnego cannot do
#                    Kerberos at all); flask PyJWT cryptography (examples/flask, hosted
#                    and verifying X-Iwa-Assertion); selenium (drives chromium-driver in
#                    the browser impersonation test)
#   Rust tools       rustfmt, clippy, cargo-nextest
#
# Nothing global is configured: the tests run their own KDC from a temp dir selected by
# environment variables. If installing krb5-kdc starts a system KDC (systemd hosts), it
# is left alone; the tests never talk to it. Installing samba on a systemd host starts
# smbd/nmbd/winbind/samba-ad-dc: those are stopped (and disabled) right away, because
# they would listen on 0.0.0.0 and a system winbindd would take /run/samba/winbindd,
# the socket the tests' DC needs.
#
# Environment: PYTHON (default python3) is the interpreter the test clients run with
# (the tests read IWA_TEST_PYTHON, default python3).
set -euo pipefail

PYTHON="${PYTHON:-python3}"

log() { echo "deps: $*" >&2; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        log "need root to run: $*"
        return 1
    fi
}

# --- Debian packages ---------------------------------------------------------------
apt_wanted=(krb5-kdc krb5-admin-server krb5-user libkrb5-dev libclang-dev pkg-config curl python3-pip
    samba samba-ad-dc samba-ad-provision winbind libwbclient-dev ldap-utils
    chromium chromium-driver)
samba_daemons=(smbd nmbd winbindd samba)
apt_missing=()
# Java's HttpURLConnection is one of the NTLM test clients; any JDK on PATH will do.
command -v javac >/dev/null 2>&1 || apt_wanted+=(default-jdk-headless)
for p in "${apt_wanted[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [[ "$status" == "install ok installed" ]] || apt_missing+=("$p")
done
# Python headers are needed to build the gssapi/krb5 wheels; pyenv/official builds ship
# them, Debian's python3 needs python3-dev.
if command -v "$PYTHON" >/dev/null 2>&1; then
    if ! "$PYTHON" -c 'import os, sysconfig, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' 2>/dev/null; then
        status="$(dpkg-query -W -f='${Status}' python3-dev 2>/dev/null || true)"
        [[ "$status" == "install ok installed" ]] || apt_missing+=(python3-dev)
    fi
else
    apt_missing+=(python3 python3-dev)
fi
# PIDs of Samba daemons running now (so only ones the install starts get stopped).
samba_pids() {
    local d
    for d in "${samba_daemons[@]}"; do pidof "$d" 2>/dev/null || true; done | tr ' ' '\n' | sed '/^$/d' | sort
}
if ((${#apt_missing[@]})); then
    log "installing Debian packages: ${apt_missing[*]}"
    samba_before="$(samba_pids)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
    # The samba packages start their system daemons where systemd runs. Stop them: the
    # tests run their own DC on 127.0.0.2.
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        for unit in samba-ad-dc smbd nmbd winbind; do
            if systemctl is-active --quiet "$unit" 2>/dev/null || systemctl is-enabled --quiet "$unit" 2>/dev/null; then
                log "stopping and disabling system service $unit (installed with samba)"
                as_root systemctl disable --now "$unit" >/dev/null 2>&1 || true
            fi
        done
    fi
    new_pids="$(comm -13 <(echo "$samba_before") <(samba_pids) | sed '/^$/d' || true)"
    for pid in $new_pids; do
        log "stopping Samba daemon pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?')) started by the install"
        as_root kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $new_pids; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && as_root kill -KILL "$pid" 2>/dev/null || true
    done
else
    log "Debian packages: all present"
fi

# --- Python modules ----------------------------------------------------------------
# module to import -> pip distribution name
py_wanted=(
    "gssapi:gssapi"
    "requests:requests"
    "requests_gssapi:requests-gssapi"
    "spnego:pyspnego"
    "krb5:krb5"
    "requests_ntlm:requests-ntlm"
    "flask:flask"
    "jwt:PyJWT"
    "cryptography:cryptography"
    "selenium:selenium"
)
py_missing=()
for entry in "${py_wanted[@]}"; do
    mod="${entry%%:*}"
    dist="${entry#*:}"
    "$PYTHON" -c "import $mod" >/dev/null 2>&1 || py_missing+=("$dist")
done
if ((${#py_missing[@]})); then
    log "installing Python modules: ${py_missing[*]} (gssapi/krb5 may compile for a few minutes)"
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
        "$PYTHON" -m ensurepip --upgrade >/dev/null 2>&1 || true
    fi
    # Debian's python3 is "externally managed"; a CI machine is disposable.
    PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
        "$PYTHON" -m pip install -q "${py_missing[@]}"
    for entry in "${py_wanted[@]}"; do
        mod="${entry%%:*}"
        "$PYTHON" -c "import $mod" || { log "python module $mod still missing"; exit 1; }
    done
else
    log "Python modules: all present"
fi

# --- Rust tools --------------------------------------------------------------------
for comp in rustfmt clippy; do
    sub="fmt"
    [[ $comp == clippy ]] && sub="clippy"
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        log "adding rustup component $comp"
        rustup component add "$comp"
    fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi
log "ready"
