# The fiberlb binary, built from this repository with the committed Cargo.lock.
{ lib, rustPlatform }:

rustPlatform.buildRustPackage {
  pname = "fiberlb";
  version = "0.1.0";
  src = lib.cleanSourceWith {
    src = ./..;
    filter = path: type:
      let base = baseNameOf path; in
      !(type == "directory" && (base == "target" || base == ".git" || base == "fiberlb-data"));
  };
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "-p" "fiberlb-node" "--bin" "fiberlb" ];
  # The integration tests start real etcd, dnsmasq and BIRD processes; run them in CI.
  doCheck = false;
  meta = {
    description = "Multi-tenant L4/L7 load balancer with gossip clustering and BGP anycast";
    license = lib.licenses.asl20;
    mainProgram = "fiberlb";
    platforms = lib.platforms.linux;
  };
}
