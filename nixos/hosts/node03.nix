# node03 of the example fleet: copy, then change the addresses to yours.
{ ... }:
{
  imports = [ (import ./fleet.nix { nodeId = "node03"; address = "10.0.0.13"; }) ];
  networking.hostName = "node03";
}
