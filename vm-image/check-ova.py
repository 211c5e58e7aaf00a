#!/usr/bin/env python3
"""check-ova.py OVA [--extract DIR]: structural check of an ipiece OVA.

Checks, each printed as "ok: ..." or "FAIL: ...":
  - the OVA is a tar whose first member is the .ovf descriptor;
  - the descriptor is XML with the OVF 1.0 envelope namespace;
  - every References/File has an href present in the tar and an ovf:size
    equal to that member's size; no disk references a missing file id;
  - the manifest (.mf) has a `SHA256(name)= hex` line for the .ovf and for
    every referenced file, and each digest matches the member's content;
  - the hardware the appliance promises: 2 vCPUs, 2048 MB, a VirtualSCSI
    (pvscsi) controller, two VmxNet3 NICs connected to WAN and LAN, EFI
    firmware, the com.vmware.guestInfo transport, the ProductSection keys;
  - each VMDK starts with the KDMV magic, version 3, and its descriptor says
    createType="streamOptimized".
With --extract DIR the members are written to DIR (for qemu-img info and the
boot tests). Exit status 1 when any check fails.
"""
import hashlib
import os
import re
import struct
import sys
import tarfile
import xml.etree.ElementTree as ET

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VMW = "http://www.vmware.com/schema/ovf"
PROPERTY_KEYS = {
    "hostname", "wan_address", "wan_gateway", "lan_address", "dns",
    "public_endpoint", "ssh_key", "ssh_from", "admin_peer_pubkey",
}

failures = 0


def check(cond, what):
    global failures
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures += 1
    return cond


def q(ns, tag):
    return "{%s}%s" % (ns, tag)


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    ova = argv[1]
    extract = argv[argv.index("--extract") + 1] if "--extract" in argv else None
    if extract:
        os.makedirs(extract, exist_ok=True)
    with tarfile.open(ova, "r:") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        check(len(members) >= 3, "OVA holds %d members: %s" % (len(members), ", ".join(names)))
        if not check(names and names[0].endswith(".ovf"), "first member is the .ovf descriptor (%s)" % names[0]):
            return 1
        check(all(m.isfile() and "/" not in m.name for m in members), "members are plain files at the top level")
        sizes = {m.name: m.size for m in members}
        data = {}
        digests = {}
        for m in members:
            f = tar.extractfile(m)
            h = hashlib.sha256()
            head = b""
            out = open(os.path.join(extract, m.name), "wb") if extract else None
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                if len(head) < 65536:
                    head += chunk[: 65536 - len(head)]
                h.update(chunk)
                if out:
                    out.write(chunk)
            if out:
                out.close()
            digests[m.name] = h.hexdigest()
            data[m.name] = head if m.name.endswith(".vmdk") else None
            if not m.name.endswith(".vmdk"):
                data[m.name] = tar.extractfile(m).read()

    ovf_name = names[0]
    try:
        root = ET.fromstring(data[ovf_name])
    except ET.ParseError as e:
        check(False, "descriptor parses as XML: %s" % e)
        return 1
    check(root.tag == q(OVF, "Envelope"), "root element is the OVF 1.0 Envelope")

    # References: hrefs and sizes
    files = {}
    for f in root.iter(q(OVF, "File")):
        href, fid, size = f.get(q(OVF, "href")), f.get(q(OVF, "id")), f.get(q(OVF, "size"))
        files[fid] = href
        if check(href in sizes, "File %s: href %s is in the OVA" % (fid, href)):
            check(size is not None and int(size) == sizes[href],
                  "File %s: ovf:size %s equals the member's size %d" % (fid, size, sizes[href]))
    check(len(files) >= 1, "References list %d file(s)" % len(files))
    for d in root.iter(q(OVF, "Disk")):
        ref = d.get(q(OVF, "fileRef"))
        check(ref in files, "Disk %s refers to a listed file (%s)" % (d.get(q(OVF, "diskId")), ref))
        check("streamOptimized" in (d.get(q(OVF, "format")) or ""), "Disk format is streamOptimized")
        cap = int(d.get(q(OVF, "capacity")) or 0)
        check(cap > 0, "Disk capacity %d bytes" % cap)

    # manifest
    mfs = [n for n in names if n.endswith(".mf")]
    if check(len(mfs) == 1, "one manifest (.mf) in the OVA"):
        lines = data[mfs[0]].decode().splitlines()
        listed = {}
        for line in lines:
            m = re.fullmatch(r"SHA256\((.+)\)= ([0-9a-f]{64})", line.strip())
            if check(m is not None, "manifest line is SHA256(name)= hex: %r" % line[:80]):
                listed[m.group(1)] = m.group(2)
        for name in [ovf_name] + list(files.values()):
            if check(name in listed, "manifest lists %s" % name):
                check(listed[name] == digests.get(name), "SHA256 of %s matches the manifest" % name)

    # virtual hardware
    vhs = root.find(".//" + q(OVF, "VirtualHardwareSection"))
    if check(vhs is not None, "VirtualHardwareSection present"):
        check(vhs.get(q(OVF, "transport")) == "com.vmware.guestInfo",
              "ovf:transport is com.vmware.guestInfo (guestinfo.ovfEnv)")
        items = []
        for it in vhs.findall(q(OVF, "Item")):
            items.append({c.tag.split("}")[1]: (c.text or "").strip() for c in it})
        by_type = lambda t: [i for i in items if i.get("ResourceType") == t]
        cpu = by_type("3")
        check(len(cpu) == 1 and cpu[0].get("VirtualQuantity") == "2", "2 vCPUs")
        mem = by_type("4")
        check(len(mem) == 1 and mem[0].get("VirtualQuantity") == "2048"
              and mem[0].get("AllocationUnits") == "byte * 2^20", "2048 MB of memory")
        scsi = by_type("6")
        check(len(scsi) == 1 and scsi[0].get("ResourceSubType") == "VirtualSCSI", "a pvscsi (VirtualSCSI) controller")
        disks = by_type("17")
        check(len(disks) == 1 and scsi and disks[0].get("Parent") == scsi[0].get("InstanceID")
              and disks[0].get("HostResource", "").startswith("ovf:/disk/"), "the disk on the pvscsi controller")
        nics = by_type("10")
        check([n.get("ResourceSubType") for n in nics] == ["VmxNet3", "VmxNet3"], "two VmxNet3 NICs")
        check([n.get("Connection") for n in nics] == ["WAN", "LAN"], "NICs on networks WAN then LAN")
        nets = [n.get(q(OVF, "name")) for n in root.iter(q(OVF, "Network"))]
        check(nets == ["WAN", "LAN"], "NetworkSection declares WAN and LAN")
        fw = [c.get(q(VMW, "value")) for c in vhs.findall(q(VMW, "Config")) if c.get(q(VMW, "key")) == "firmware"]
        check(fw == ["efi"], "firmware=efi")
    ps = root.find(".//" + q(OVF, "ProductSection"))
    if check(ps is not None, "ProductSection present"):
        check(ps.get(q(OVF, "class")) == "ipiece", "ProductSection ovf:class is ipiece (keys ipiece.KEY)")
        keys = {p.get(q(OVF, "key")) for p in ps.iter(q(OVF, "Property"))}
        check(PROPERTY_KEYS <= keys, "ProductSection properties: %s" % ", ".join(sorted(keys)))
        undescribed = sorted(
            p.get(q(OVF, "key")) for p in ps.iter(q(OVF, "Property"))
            if not (p.findtext(q(OVF, "Label")) or "").strip()
            or not (p.findtext(q(OVF, "Description")) or "").strip())
        check(not undescribed, "every property has a Label and a Description%s"
              % (" (not: %s)" % ", ".join(undescribed) if undescribed else ""))

    # VMDK headers
    for href in files.values():
        if not href.endswith(".vmdk") or href not in data:
            continue
        head = data[href]
        magic, version = head[:4], struct.unpack("<I", head[4:8])[0]
        check(magic == b"KDMV", "%s: sparse extent magic KDMV" % href)
        check(version == 3, "%s: header version %d (ESXi needs 3 for streamOptimized)" % (href, version))
        desc_off = struct.unpack("<Q", head[28:36])[0] * 512
        desc_len = struct.unpack("<Q", head[36:44])[0] * 512
        desc = head[desc_off:desc_off + desc_len].split(b"\0")[0].decode(errors="replace")
        check('createType="streamOptimized"' in desc, "%s: descriptor createType=\"streamOptimized\"" % href)

    print("check-ova: %s: %s" % (ova, "all checks passed" if failures == 0 else "%d check(s) failed" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
