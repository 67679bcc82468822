"""Running the series under real KVM: an emulated Arm host.

Entry points: `nested.NestedHost` (the emulated host: its initramfs, the
KVM-only build inside), `scenario.run` (the stages run on it),
`migration.run` (the migration stage: three inner QEMUs in one boot);
`qmp.Qmp` (a QMP client over a connected socket), `initramfs.cpio`
(archives written in Python); the bare-metal guest is payload.S.
"""
