# Without flakes: `nix-build nixos -A package`, and `imports = [ ./nixos/default.nix ].module`.
{ pkgs ? import <nixpkgs> { } }:
{
  package = pkgs.callPackage ./package.nix { };
  module = ./module.nix;
  hosts = {
    node01 = ./hosts/node01.nix;
    node02 = ./hosts/node02.nix;
    node03 = ./hosts/node03.nix;
  };
}
