"""Evidence clips: the signed clip manifest's format, and how anyone holding a node's public
key checks a clip against it, without the node.

`manifest` is the format and its check (`verify`), `hashing` the hashes it holds (a clip's
video packets per recorded segment, a file's SHA-256), `keys` the node's public Ed25519 key
(load it, fingerprint it) and `keyfiles` the key files' names and fingerprint with the
standard library alone. The node makes, signs and writes manifests (edge.record); the hub
checks them. Import the submodules themselves: this package loads nothing.
"""
