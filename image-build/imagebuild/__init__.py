"""The pole's SD-card image, built on an x86 machine from Debian's archive and PyPI's aarch64
wheels without mounting anything: `config` (image.yaml), `tools` (what the host must have),
`wheels` (the venv's wheels), `rootfs` (mmdebstrap and the customisation of root A),
`disk` (FAT, ext4 and the MBR), `outputs` (xz, bmap, checksums, Imager list, SBOM),
`qemu` (booting the result), `build` (the steps in order)."""
