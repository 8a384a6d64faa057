#!/usr/bin/env bash
# Installs (or uninstalls) farmem from a built source tree: the package, the command wrappers, the
# systemd units, the sysusers/tmpfiles entries, the udev rule and the example configuration.
# Idempotent: a second run changes nothing it did not already set. Prints every action it takes.
set -euo pipefail

prog=deploy/install.sh
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  cat <<EOF
Usage: $prog [--prefix DIR] [--root DIR] [--node PATH] [--no-enable] [--dry-run]
       $prog --uninstall [--purge] [--prefix DIR] [--root DIR] [--dry-run]

Installs farmem from this built source tree (run npm install first).

  --prefix DIR   where the package goes (default /usr/local): DIR/lib/farmem, DIR/bin,
                 DIR/share/farmem/examples, DIR/share/doc/farmem. Units, sysusers.d, tmpfiles.d and
                 udev rules go under DIR/lib when DIR is /usr or /usr/local (both on systemd's and
                 udev's search paths), else under /etc. Configuration is always /etc/farmem, state
                 /var/lib/farmem and /var/lib/farmem-memserver, the socket /run/farmem/farmemd.sock.
  --root DIR     stage everything under DIR (packaging, tests): no root needed, and neither
                 systemd-sysusers, systemd-tmpfiles nor udevadm is run (the package's scripts do).
  --node PATH    the node binary the wrappers run (default: node on PATH, now $(command -v node || echo none))
  --no-enable    do not enable farmemd.service (default: enable it, without starting it)
  --dry-run      print every action and change nothing
  --uninstall    remove what the install put (configuration and state are kept)
  --purge        with --uninstall: also remove /etc/farmem and the state directories
  --help         this text
EOF
}

die() { echo "$prog: $*" >&2; exit 1; }
usage_error() { echo "$prog: $*" >&2; echo "Try '$prog --help'." >&2; exit 2; }

prefix=/usr/local root='' node='' enable=1 dry_run=0 uninstall=0 purge=0
need_value() { [ $# -ge 2 ] && [ -n "$2" ] || usage_error "Expected a value for $1 but received nothing"; }
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) need_value "$@"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --root) need_value "$@"; root=$2; shift 2 ;;
    --root=*) root=${1#*=}; shift ;;
    --node) need_value "$@"; node=$2; shift 2 ;;
    --node=*) node=${1#*=}; shift ;;
    --no-enable) enable=0; shift ;;
    --dry-run) dry_run=1; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage_error "Expected one of --prefix, --root, --node, --no-enable, --dry-run, --uninstall, --purge, --help but received \"$1\"" ;;
  esac
done
case $prefix in /*) ;; *) usage_error "Expected an absolute path for --prefix but received \"$prefix\"" ;; esac
case $root in ''|/*) ;; *) usage_error "Expected an absolute path for --root but received \"$root\"" ;; esac
[ $purge -eq 0 ] || [ $uninstall -eq 1 ] || usage_error "Expected --purge only with --uninstall but received --purge alone"
prefix=${prefix%/}
root=${root%/}

# Paths as the installed system sees them; every file operation goes to $root$path.
pkgdir=$prefix/lib/farmem
bindir=$prefix/bin
sharedir=$prefix/share/farmem
docdir=$prefix/share/doc/farmem
case $prefix in /usr|/usr/local) sysdir=$prefix/lib ;; *) sysdir=/etc ;; esac
unitdir=$sysdir/systemd/system
sysusersdir=$sysdir/sysusers.d
tmpfilesdir=$sysdir/tmpfiles.d
udevdir=$sysdir/udev/rules.d
confdir=/etc/farmem
units=(farmemd.service farmem-memserver.service)
bins=(farmem:client/bin/farmem.js farmemd:daemon/bin/farmemd.js farmem-memserver:daemon/bin/farmem-memserver.js)
marker='# installed by farmem deploy/install.sh'

if [ $dry_run -eq 0 ] && [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  die "must run as root (use --root DIR to stage into a directory, or --dry-run to see the plan)"
fi

# step DESCRIPTION COMMAND...: prints what it does, then does it (not in a dry run).
step() { local what=$1; shift; echo "  $what"; [ $dry_run -eq 1 ] || "$@"; }
note() { echo "  note: $*"; }
# A host tool is run only on the live system with the tool present and, for systemctl/udevadm, running.
live() { [ -z "$root" ] && command -v "$1" >/dev/null 2>&1; }
systemd_running() { live systemctl && [ -d /run/systemd/system ]; }
udev_running() { live udevadm && [ -S /run/udev/control ]; }

install_file() { # MODE SRC DEST
  install -D -m "$1" "$2" "$3"
}
install_unit() { # SRC DEST: ExecStart and Documentation follow the prefix
  local tmp
  tmp=$(mktemp)
  sed -E "/^(ExecStart|Documentation)=/ s#/usr/local/#$prefix/#g" "$1" >"$tmp"
  install -D -m 0644 "$tmp" "$2"
  rm -f "$tmp"
}
write_wrapper() { # DEST SCRIPT
  mkdir -p "$(dirname "$1")"
  printf '#!/bin/sh\n%s\nexec %q %q "$@"\n' "$marker" "$node" "$pkgdir/$2" >"$1.tmp"
  chmod 0755 "$1.tmp"
  mv -f "$1.tmp" "$1"
}
copy_package() { # DEST: staged next to DEST, then swapped in, so stale files of an older version go
  local dest=$1 tmp="$1.new" d rel
  rm -rf "$tmp"
  mkdir -p "$tmp/dist" "$tmp/build/Release" "$tmp/client/bin" "$tmp/daemon/bin"
  cp "$src/package.json" "$tmp/"
  for d in "$src"/dist/*; do [ "$(basename "$d")" = test ] || cp -R "$d" "$tmp/dist/"; done
  cp "$src/build/Release/farmem_native.node" "$tmp/build/Release/"
  cp "$src/client/bin/farmem.js" "$tmp/client/bin/"
  cp "$src"/daemon/bin/*.js "$tmp/daemon/bin/"
  [ ! -d "$src/proto/farmem" ] || { mkdir -p "$tmp/proto"; cp -R "$src/proto/farmem" "$tmp/proto/"; }
  [ ! -d "$src/proto/gen" ] || { mkdir -p "$tmp/proto"; cp -R "$src/proto/gen" "$tmp/proto/"; }
  for rel in "${deps[@]}"; do
    mkdir -p "$tmp/$(dirname "$rel")"
    cp -R "$src/$rel" "$tmp/$rel"
  done
  chmod -R u=rwX,go=rX "$tmp"
  rm -rf "$dest"
  mv "$tmp" "$dest"
}
remove() { # PATH...: removes what exists
  rm -rf -- "$@"
}

do_install() {
  [ -d "$src/dist" ] || die "the build is missing ($src/dist not found): run npm install first"
  [ -f "$src/build/Release/farmem_native.node" ] || die "the build is missing ($src/build/Release/farmem_native.node not found): run npm install first"
  [ -d "$src/node_modules" ] || die "the dependencies are missing ($src/node_modules not found): run npm install first"
  command -v npm >/dev/null 2>&1 || die "npm is needed to list the production dependencies"
  local listed
  listed=$(cd "$src" && npm ls --omit=dev --all --parseable 2>/dev/null) \
    || die "npm ls reports missing or invalid production dependencies: run npm install first"
  # Only top-level packages: nested ones are copied with their parent.
  deps=()
  local p rel
  while IFS= read -r p; do
    rel=${p#"$src"/}
    [[ $rel =~ ^node_modules/(@[^/]+/)?[^/]+$ ]] && deps+=("$rel")
  done <<<"$listed"

  [ -n "$node" ] || node=$(command -v node || true)
  [ -n "$node" ] || die "node is not on PATH: pass --node PATH"
  case $node in /*) ;; *) die "Expected an absolute path for --node but received \"$node\"" ;; esac
  [ -x "$node" ] || die "Expected an executable node for --node but received \"$node\""
  case $node in /home/*|/root/*|/run/user/*) echo "$prog: warning: $node is under a home directory: ProtectHome=yes hides it from the services; install node system-wide" >&2 ;; esac

  echo "farmem: $([ $dry_run -eq 1 ] && echo 'dry run, nothing is changed; would install' || echo installing) prefix $prefix${root:+ under root $root}"
  [ -f "$src/dist/daemon/main.js" ] || note "dist/daemon/main.js is not built yet: farmemd will not start until it is"
  step "copy package (dist, native addon, ${#deps[@]} production dependencies) -> $root$pkgdir" copy_package "$root$pkgdir"
  local b
  for b in "${bins[@]}"; do
    step "write wrapper $root$bindir/${b%%:*} (exec $node $pkgdir/${b#*:})" write_wrapper "$root$bindir/${b%%:*}" "${b#*:}"
  done
  local u
  for u in "${units[@]}"; do
    step "install -m 0644 deploy/$u -> $root$unitdir/$u (paths under $prefix)" install_unit "$src/deploy/$u" "$root$unitdir/$u"
  done
  step "install -m 0644 deploy/sysusers.d/farmem.conf -> $root$sysusersdir/farmem.conf" install_file 0644 "$src/deploy/sysusers.d/farmem.conf" "$root$sysusersdir/farmem.conf"
  step "install -m 0644 deploy/tmpfiles.d/farmem.conf -> $root$tmpfilesdir/farmem.conf" install_file 0644 "$src/deploy/tmpfiles.d/farmem.conf" "$root$tmpfilesdir/farmem.conf"
  step "install -m 0644 deploy/udev/60-farmem-userfaultfd.rules -> $root$udevdir/60-farmem-userfaultfd.rules" install_file 0644 "$src/deploy/udev/60-farmem-userfaultfd.rules" "$root$udevdir/60-farmem-userfaultfd.rules"

  # Examples are ours (always refreshed); /etc/farmem is the operator's (written only when absent).
  local name example
  for name in farmemd.toml farmem-memserver.toml; do
    example=$src/deploy/examples/$name
    [ -f "$example" ] || example=$src/deploy/$name
    if [ ! -f "$example" ]; then
      note "no example for $name in deploy/: not installing $confdir/$name"
      continue
    fi
    step "install -m 0644 ${example#"$src"/} -> $root$sharedir/examples/$name" install_file 0644 "$example" "$root$sharedir/examples/$name"
    if [ -e "$root$confdir/$name" ]; then
      echo "  keep $root$confdir/$name (exists)"
    else
      step "install -m 0640 ${example#"$src"/} -> $root$confdir/$name" install_file 0640 "$example" "$root$confdir/$name"
    fi
  done
  step "install -m 0644 docs/operator-guide.md -> $root$docdir/operator-guide.md" install_file 0644 "$src/docs/operator-guide.md" "$root$docdir/operator-guide.md"

  # Users before directories (tmpfiles names them) and before udev (the rule names the group).
  if live systemd-sysusers; then
    step "systemd-sysusers $sysusersdir/farmem.conf" systemd-sysusers "$sysusersdir/farmem.conf"
  elif [ -z "$root" ]; then note "systemd-sysusers not found: create the users of deploy/sysusers.d/farmem.conf yourself"; fi
  if live systemd-tmpfiles; then
    step "systemd-tmpfiles --create $tmpfilesdir/farmem.conf" systemd-tmpfiles --create "$tmpfilesdir/farmem.conf"
  elif [ -z "$root" ]; then note "systemd-tmpfiles not found: create the directories of deploy/tmpfiles.d/farmem.conf yourself"; fi
  if udev_running; then
    step "udevadm control --reload" udevadm control --reload
    step "udevadm trigger --sysname-match=userfaultfd" udevadm trigger --sysname-match=userfaultfd
  elif [ -z "$root" ]; then note "udev is not running: /dev/userfaultfd gets its group from tmpfiles.d instead"; fi

  if [ -n "$root" ]; then
    if [ $enable -eq 1 ] && command -v systemctl >/dev/null 2>&1; then
      step "systemctl --root=$root enable farmemd.service" systemctl --quiet --root="$root" enable farmemd.service
    fi
  elif systemd_running; then
    step "systemctl daemon-reload" systemctl daemon-reload
    [ $enable -eq 0 ] || step "systemctl enable farmemd.service" systemctl --quiet enable farmemd.service
  else
    note "systemd is not running: units installed, not enabled"
  fi
  echo "farmem: $([ $dry_run -eq 1 ] && echo 'dry run done' || echo 'installed'). Next:"
  echo "  edit $confdir/farmemd.toml, then: systemctl start farmemd"
  echo "  on a memory-server host: edit $confdir/farmem-memserver.toml, then: systemctl enable --now farmem-memserver"
  echo "  let a user attach regions: usermod -aG farmem USER"
}

do_uninstall() {
  echo "farmem: $([ $dry_run -eq 1 ] && echo 'dry run, nothing is changed; would uninstall' || echo uninstalling) prefix $prefix${root:+ under root $root}"
  local u present=()
  for u in "${units[@]}"; do [ ! -e "$root$unitdir/$u" ] || present+=("$u"); done
  if [ ${#present[@]} -gt 0 ]; then
    if [ -n "$root" ]; then
      ! command -v systemctl >/dev/null 2>&1 ||
        step "systemctl --root=$root disable ${present[*]}" systemctl --quiet --root="$root" disable "${present[@]}"
    elif systemd_running; then
      step "systemctl disable --now ${present[*]}" systemctl --quiet disable --now "${present[@]}"
    fi
  fi
  local p b
  for b in "${bins[@]}"; do
    p=$root$bindir/${b%%:*}
    if [ -f "$p" ] && grep -qxF "$marker" "$p"; then step "remove $p" remove "$p"
    elif [ -e "$p" ]; then note "keep $p (not written by this script)"; fi
  done
  for p in "${units[@]/#/$root$unitdir/}" "$root$sysusersdir/farmem.conf" "$root$tmpfilesdir/farmem.conf" \
    "$root$udevdir/60-farmem-userfaultfd.rules" "$root$pkgdir" "$root$sharedir" "$root$docdir"; do
    [ ! -e "$p" ] || step "remove $p" remove "$p"
  done
  if [ $purge -eq 1 ]; then
    for p in "$root$confdir" "$root/var/lib/farmem" "$root/var/lib/farmem-memserver"; do
      [ ! -e "$p" ] || step "remove $p" remove "$p"
    done
    note "the farmem and farmem-memserver users stay (files they owned may remain); remove them with userdel if you must"
  else
    note "kept $confdir, /var/lib/farmem and /var/lib/farmem-memserver (--purge removes them)"
  fi
  ! systemd_running || step "systemctl daemon-reload" systemctl daemon-reload
  ! udev_running || step "udevadm control --reload" udevadm control --reload
  echo "farmem: $([ $dry_run -eq 1 ] && echo 'dry run done' || echo 'uninstalled')."
}

if [ $uninstall -eq 1 ]; then do_uninstall; else do_install; fi
