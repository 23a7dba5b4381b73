# safecity-ab: boots root slot A (partition 2) or B (partition 3) of this disk, counts the
# trial boots of a new slot and goes back to the other slot after `bootlimit` of them.
# Found by U-Boot's distro boot as /boot.scr on the FAT partition (devtype and devnum are
# set by it). The state is a U-Boot environment blob kept in two copies on the FAT
# partition: copy 1 is always written whole before copy 2, so a power cut leaves one good.
# Linux changes it with fw_setenv (firmware/bootctl/uboot.py); boot_script() there fills in
# @DISK_ID@ (the MBR disk id) and @CMDLINE@ (console and other kernel arguments).
# `bootargs_extra` in the state, if set, goes last on the kernel's command line (a test's
# serial console, a technician's debug flag); it survives every write of the state.
# U-Boot's setexpr works in hex while test compares decimal: bootlimit stays within 1..9.

# the state is loaded where the kernel goes later (scriptaddr holds this script)
setenv ab_addr ${kernel_addr_r}
# reads copy ${ab_copy}: whole (0x4000 bytes), a good CRC and slot A or B, else fails
setenv ab_read 'setenv slot; setenv upgrade_available; setenv bootcount; setenv bootlimit; setenv bootargs_extra; load ${devtype} ${devnum}:1 ${ab_addr} safecity-ab-${ab_copy}.env && test ${filesize} = 4000 && env import -c ${ab_addr} 0x4000 slot upgrade_available bootcount bootlimit bootargs_extra && test "${slot}" = A -o "${slot}" = B'

setenv ab_copy 1
if run ab_read; then
  setenv ab_from safecity-ab-1.env
else
  echo "safecity-ab: safecity-ab-1.env is missing or damaged, reading safecity-ab-2.env"
  setenv ab_copy 2
  if run ab_read; then
    setenv ab_from safecity-ab-2.env
  else
    echo "safecity-ab: safecity-ab-2.env is missing or damaged too: slot A, no trial"
    setenv ab_from defaults
    setenv slot A
    setenv upgrade_available 0
    setenv bootcount 0
    setenv bootlimit 3
  fi
fi
# a counter is one digit, else its default (as firmware/bootctl/uboot.py reads it)
setenv ab_count 0
setenv ab_limit 3
for ab_n in 1 2 3 4 5 6 7 8 9; do
  if test "${bootcount}" = ${ab_n}; then setenv ab_count ${ab_n}; fi
  if test "${bootlimit}" = ${ab_n}; then setenv ab_limit ${ab_n}; fi
done
setenv bootcount ${ab_count}
setenv bootlimit ${ab_limit}
echo "safecity-ab: slot=${slot} upgrade_available=${upgrade_available} bootcount=${bootcount} bootlimit=${bootlimit} (${ab_from})"
if test "${slot}" = A; then setenv ab_other B; else setenv ab_other A; fi

# count this boot of a slot under trial, or give the trial up
setenv ab_note
if test "${upgrade_available}" = 1; then
  if test ${bootcount} -ge ${bootlimit}; then
    echo "safecity-ab: slot ${slot} failed ${bootcount} trial boots, back to slot ${ab_other}"
    setenv slot ${ab_other}
    setenv upgrade_available 0
    setenv bootcount 0
  else
    setexpr bootcount ${bootcount} + 1
    setenv ab_note " (trial ${bootcount} of ${bootlimit})"
  fi
  env export -c -s 0x4000 ${ab_addr} slot upgrade_available bootcount bootlimit bootargs_extra
  fatwrite ${devtype} ${devnum}:1 ${ab_addr} safecity-ab-1.env 0x4000 || echo "safecity-ab: could not write safecity-ab-1.env"
  fatwrite ${devtype} ${devnum}:1 ${ab_addr} safecity-ab-2.env 0x4000 || echo "safecity-ab: could not write safecity-ab-2.env"
fi

# the slot's kernel, else (an empty or damaged slot) the other one's, state unchanged
setenv ab_fdt ${fdtcontroladdr}
# the firmware's device tree (the Pi's; QEMU's at the start of RAM), else U-Boot's own
if test -n "${fdt_addr}" && fdt addr -q ${fdt_addr}; then setenv ab_fdt ${fdt_addr}; fi
setenv ab_boot ${slot}
for ab_pass in 1 2; do
  if test ${ab_boot} = B; then setenv ab_part 3; else setenv ab_part 2; fi
  echo "safecity-ab: booting slot ${ab_boot}${ab_note}"
  if load ${devtype} ${devnum}:${ab_part} ${kernel_addr_r} /boot/vmlinuz && load ${devtype} ${devnum}:${ab_part} ${ramdisk_addr_r} /boot/initrd.img; then
    setenv bootargs "root=PARTUUID=@DISK_ID@-0${ab_part} ro rootwait @CMDLINE@ ${bootargs_extra}"
    booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${ab_fdt}
    echo "safecity-ab: the kernel of slot ${ab_boot} did not start"
  else
    echo "safecity-ab: slot ${ab_boot} has no /boot/vmlinuz or /boot/initrd.img"
  fi
  if test ${ab_boot} = A; then setenv ab_boot B; else setenv ab_boot A; fi
  setenv ab_note
done
echo "safecity-ab: neither slot A nor slot B could be booted"
