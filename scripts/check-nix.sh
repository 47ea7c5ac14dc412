#!/usr/bin/env bash
# Checks the NixOS files without nixpkgs (none is reachable from here): every .nix file
# parses, and each example host's settings — evaluated through nixos/settings.nix with a
# stand-in for the two `lib` functions it uses — render to a TOML file that
# `fiberlb check-config` accepts. Full module evaluation needs nixpkgs (see README).
set -euo pipefail
export NIX_CONFIG="build-users-group ="
cd "$(dirname "$0")/.."
bin=${FIBERLB_BIN:-target/debug/fiberlb}

for f in $(find nixos -name '*.nix' | sort); do
  nix-instantiate --parse "$f" >/dev/null
done
echo "parsed: $(find nixos -name '*.nix' | wc -l) files"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%064d\n' 0 > "$work/cluster.key"
printf 'placeholder-bootstrap-token-0000\n' > "$work/token"

for host in nixos/hosts/node0*.nix; do
  name=$(basename "$host" .nix)
  nix-instantiate --eval --strict --json --expr "
    let
      rU = lhs: rhs: lhs // builtins.mapAttrs (n: v:
        if builtins.isAttrs v && builtins.isAttrs (lhs.\${n} or null) then rU lhs.\${n} v else v) rhs;
      lib = { recursiveUpdate = rU; optionalAttrs = c: a: if c then a else { }; };
      hostModule = import ./$host { };
      fleetModule = (builtins.head hostModule.imports) { };
      cfg = fleetModule.services.fiberlb;
    in import ./nixos/settings.nix { inherit lib cfg; }
  " > "$work/$name.json"
  python3 - "$work/$name.json" "$work/$name.toml" "$work" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
work = sys.argv[3]
# Secret paths point at files that exist only on the real host: use stand-ins.
data.setdefault("cluster", {})["key_file"] = f"{work}/cluster.key"
data.setdefault("admin", {})["bootstrap_token_file"] = f"{work}/token"
data["storage"]["data_dir"] = f"{work}/data"
def scalar(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, (int, float)): return str(v)
    if isinstance(v, str): return json.dumps(v)
    if isinstance(v, list): return "[" + ", ".join(scalar(x) for x in v) + "]"
    raise TypeError(v)
out = []
def table(path, d):
    plain = {k: v for k, v in d.items() if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
    if path and plain:
        out.append(f"[{'.'.join(path)}]")
    for k, v in plain.items():
        out.append(f"{k} = {scalar(v)}")
    for k, v in d.items():
        if isinstance(v, dict):
            table(path + [k], v)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                out.append(f"[[{'.'.join(path + [k])}]]")
                for ik, iv in item.items():
                    out.append(f"{ik} = {scalar(iv)}")
table([], data)
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
  "$bin" check-config -c "$work/$name.toml"
done
