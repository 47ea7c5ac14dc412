# node02 of the example fleet: copy, then change the addresses to yours.
{ ... }:
{
  imports = [ (import ./fleet.nix { nodeId = "node02"; address = "10.0.0.12"; }) ];
  networking.hostName = "node02";
}
