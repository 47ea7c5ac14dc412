# node01 of the example fleet: copy, then change the addresses to yours.
{ ... }:
{
  imports = [ (import ./fleet.nix { nodeId = "node01"; address = "10.0.0.11"; }) ];
  networking.hostName = "node01";
}
