# The settings the module renders: the operator's `settings` plus what the module's own
# options imply. A plain function of `lib` (only recursiveUpdate and optionalAttrs), so CI
# can evaluate it without nixpkgs (see scripts/check-nix.sh).
{ lib, cfg }:
lib.recursiveUpdate
  { storage.data_dir = "/var/lib/fiberlb"; }
  (lib.recursiveUpdate cfg.settings (
    lib.optionalAttrs (cfg.clusterKeyFile != null) { cluster.key_file = toString cfg.clusterKeyFile; }
    // lib.optionalAttrs (cfg.bootstrapTokenFile != null) { admin.bootstrap_token_file = toString cfg.bootstrapTokenFile; }
    // lib.optionalAttrs (cfg.vips != [ ]) { bgp.manage_vip_addresses = true; }
  ))
