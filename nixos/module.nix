# services.fiberlb: a FiberLB node (gRPC API, admin HTTP, L4/L7 data plane, gossip, BGP).
#
# `settings` is rendered to the TOML of the product spec §8.1 (every server setting is
# reachable: see node/src/settings/example.toml for the keys), checked at build time with
# `fiberlb check-config`, so a bad setting fails `nixos-rebuild`, not the running fleet.
# Secrets (the cluster key, the bootstrap admin token) are paths read at run time and never
# copied into the Nix store.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.fiberlb;
  toml = pkgs.formats.toml { };

  effectiveSettings = import ./settings.nix { inherit lib cfg; };

  configFile = toml.generate "fiberlb.toml" effectiveSettings;

  # The rendered file, validated by the package's own binary at build time. Secret files
  # do not exist in the build sandbox: the check points those settings at stand-ins.
  checkedConfig = pkgs.runCommand "fiberlb-config-checked" { } ''
    printf '%064d\n' 0 > cluster.key
    printf 'placeholder-bootstrap-token-0000\n' > token
    cp ${configFile} check.toml
    ${lib.optionalString (cfg.clusterKeyFile != null) ''substituteInPlace check.toml --replace-fail "${toString cfg.clusterKeyFile}" "$PWD/cluster.key"''}
    ${lib.optionalString (cfg.bootstrapTokenFile != null) ''substituteInPlace check.toml --replace-fail "${toString cfg.bootstrapTokenFile}" "$PWD/token"''}
    ${cfg.package}/bin/fiberlb check-config -c check.toml
    cp ${configFile} $out
  '';

  grpcPort = lib.toInt (lib.last (lib.splitString ":" (effectiveSettings.server.grpc_addr or "127.0.0.1:6300")));
  adminPort = lib.toInt (lib.last (lib.splitString ":" (effectiveSettings.server.metrics_addr or "127.0.0.1:9090")));
  gossipPort = lib.toInt (lib.last (lib.splitString ":" (effectiveSettings.cluster.gossip_addr or "0.0.0.0:7946")));
  bgpEnabled = effectiveSettings.bgp.enabled or false;
  managesVips = effectiveSettings.bgp.manage_vip_addresses or false;
in
{
  options.services.fiberlb = {
    enable = lib.mkEnableOption "the FiberLB load balancer node";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The fiberlb package.";
    };

    settings = lib.mkOption {
      type = toml.type;
      default = { };
      example = lib.literalExpression ''
        {
          server.grpc_addr = "0.0.0.0:6300";
          storage = { backend = "chainfire"; chainfire_endpoints = [ "http://10.0.0.1:2379" ]; };
          cluster = { node_id = "node01"; gossip_addr = "10.0.0.11:7946"; peers = [ "10.0.0.12:7946" ]; };
          bgp = { enabled = true; asn = 65001; peers = [ { address = "10.0.0.1"; asn = 65000; } ]; };
        }
      '';
      description = ''
        FiberLB server settings, rendered to TOML (sections of spec §8.1: server, storage,
        proxy, health_check, circuit_breaker, iam, plasmavmc, flashdns, logging, admin,
        cluster, bgp). Checked with `fiberlb check-config` at build time.
      '';
    };

    clusterKeyFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/run/keys/fiberlb-cluster.key";
      description = "File with the gossip cluster key (read at run time, never copied to the store).";
    };

    bootstrapTokenFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = "/run/keys/fiberlb-admin-token";
      description = "File with the bootstrap admin token (read at run time, never copied to the store).";
    };

    vips = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [ "10.200.0.10" ];
      description = "Anycast VIPs this node puts on `lo` and announces over BGP.";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the gRPC, admin, gossip and BGP ports in the firewall.";
    };
  };

  config = lib.mkIf cfg.enable {
    users.users.fiberlb = {
      isSystemUser = true;
      group = "fiberlb";
      description = "FiberLB load balancer";
    };
    users.groups.fiberlb = { };

    networking.interfaces.lo.ipv4.addresses = map (vip: { address = vip; prefixLength = 32; }) cfg.vips;

    networking.firewall = lib.mkIf cfg.openFirewall {
      allowedTCPPorts = [ grpcPort adminPort ] ++ lib.optional bgpEnabled 179;
      allowedUDPPorts = [ gossipPort ];
    };

    environment.etc."fiberlb/fiberlb.toml".source = checkedConfig;

    systemd.services.fiberlb = {
      description = "FiberLB load balancer node";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      restartTriggers = [ checkedConfig ];
      serviceConfig = {
        Type = "notify";
        ExecStart = "${cfg.package}/bin/fiberlb serve -c /etc/fiberlb/fiberlb.toml";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "on-failure";
        RestartSec = "2s";
        User = "fiberlb";
        Group = "fiberlb";
        StateDirectory = "fiberlb";
        StateDirectoryMode = "0700";
        WorkingDirectory = "/var/lib/fiberlb";
        LimitNOFILE = 1048576;
        TimeoutStopSec = "60s";
        AmbientCapabilities = [ "CAP_NET_BIND_SERVICE" ] ++ lib.optional managesVips "CAP_NET_ADMIN";
        CapabilityBoundingSet = [ "CAP_NET_BIND_SERVICE" ] ++ lib.optional managesVips "CAP_NET_ADMIN";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" "AF_NETLINK" ];
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
        UMask = "0077";
      };
    };
  };
}
