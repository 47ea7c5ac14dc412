# Settings every FiberLB node of the example fleet shares: one ChainFire (etcd) endpoint
# list, the gossip peers, the top-of-rack BGP router and the VIP pool.
{ nodeId, address }:
{ ... }:
{
  imports = [ ../module.nix ];

  services.fiberlb = {
    enable = true;
    openFirewall = true;
    clusterKeyFile = "/run/keys/fiberlb-cluster.key";
    bootstrapTokenFile = "/run/keys/fiberlb-admin-token";
    vips = [ "10.200.0.10" ];
    settings = {
      server = {
        grpc_addr = "${address}:6300";
        metrics_addr = "${address}:9090";
      };
      storage = {
        backend = "chainfire";
        chainfire_endpoints = [ "http://10.0.0.21:2379" "http://10.0.0.22:2379" "http://10.0.0.23:2379" ];
      };
      cluster = {
        node_id = nodeId;
        gossip_addr = "${address}:7946";
        peers = [ "10.0.0.11:7946" "10.0.0.12:7946" "10.0.0.13:7946" ];
        vip_pool = "10.200.0.0/24";
      };
      bgp = {
        enabled = true;
        asn = 65001;
        router_id = address;
        graceful_shutdown_wait_ms = 5000;
        peers = [ { address = "10.0.0.1"; asn = 65000; hold_time = 9; } ];
      };
      logging = { level = "info"; format = "json"; };
    };
  };
}
