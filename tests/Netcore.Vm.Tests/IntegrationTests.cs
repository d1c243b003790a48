using System.Text;
using Netcore.Netlink;
using Netcore.Vm.Devices.Virtio;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Tests;

/// <summary>newc cpio archive writer (the initramfs format, Documentation/driver-api/early-userspace/buffer-format.rst).</summary>
internal sealed class Cpio
{
    private readonly MemoryStream _out = new();
    private int _ino = 1;

    public void Add(string name, byte[] data, uint mode)
    {
        byte[] nameBytes = Encoding.ASCII.GetBytes(name + "\0");
        string header = string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"070701{_ino++:X8}{mode:X8}{0:X8}{0:X8}{1:X8}{0:X8}{data.Length:X8}{0:X8}{0:X8}{0:X8}{0:X8}{nameBytes.Length:X8}{0:X8}");
        _out.Write(Encoding.ASCII.GetBytes(header));
        _out.Write(nameBytes);
        Pad();
        _out.Write(data);
        Pad();
    }

    private void Pad()
    {
        while (_out.Length % 4 != 0)
            _out.WriteByte(0);
    }

    public byte[] Finish()
    {
        Add("TRAILER!!!", [], 0);
        return _out.ToArray();
    }
}

public sealed class IntegrationTests(ITestOutputHelper output)
{
    [LinuxFact(HardwareVirtualization = true, Tools = ["busybox"])]
    public async Task DebianKernelBootsBusyboxInitToTheMarkerAndExitsThroughTheDebugPort()
    {
        string kernel = BootTests.KernelPath() ?? throw new InvalidOperationException("no /boot/vmlinuz-*");
        var cpio = new Cpio();
        cpio.Add("bin", [], 0x41ED);
        cpio.Add("dev", [], 0x41ED);
        cpio.Add("bin/busybox", File.ReadAllBytes(Shell.Which("busybox")!), 0x81ED);
        cpio.Add("init", Encoding.ASCII.GetBytes(
            "#!/bin/busybox sh\n" +
            "/bin/busybox mount -t devtmpfs dev /dev\n" +
            "echo NETCORE-BOOT-MARKER > /dev/ttyS0\n" +
            "/bin/busybox printf '\\000' | /bin/busybox dd of=/dev/port bs=1 seek=244 count=1\n" +
            "/bin/busybox sleep 5\n"), 0x81ED);
        var console = new MemoryStream();
        await using var vm = MicroVm.Create(new MicroVmOptions
        {
            KernelPath = kernel,
            Initrd = cpio.Finish(),
            CommandLine = "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux i8042.nomux i8042.dumbkbd rdinit=/init",
            MemorySize = 512UL << 20,
            Console = console,
        });
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        int? status = await vm.RunAsync(cts.Token);
        string text = Encoding.ASCII.GetString(console.ToArray());
        output.WriteLine(text);
        Assert.Contains("NETCORE-BOOT-MARKER", text, StringComparison.Ordinal);
        Assert.Equal(1, status);
    }

    /// <summary>
    /// The stock Debian kernel (virtio_pci and virtio_blk are modules, no virtio-mmio command-line
    /// devices) finds a virtio-blk disk on legacy PCI by itself: the modules are loaded from the
    /// host's /lib/modules, and init reports the PCI ids, the IRQ the kernel took from the MP table
    /// and the disk's first bytes. Needs VT-x/AMD-V (on PVM the kernel's CPL0 code is emulated).
    /// </summary>
    [LinuxFact(HardwareVirtualization = true, Tools = ["busybox"])]
    public async Task DebianKernelFindsALegacyPciVirtioDiskWithoutCommandLineHelp()
    {
        string kernel = BootTests.KernelPath() ?? throw new InvalidOperationException("no /boot/vmlinuz-*");
        string version = Path.GetFileName(kernel)["vmlinuz-".Length..];
        string modules = $"/lib/modules/{version}/kernel/drivers";
        string[] order = ["virtio/virtio", "virtio/virtio_ring", "virtio/virtio_pci_legacy_dev", "virtio/virtio_pci_modern_dev", "virtio/virtio_pci", "block/virtio_blk"];
        var cpio = new Cpio();
        foreach (string dir in new[] { "bin", "dev", "sys", "proc", "lib" })
            cpio.Add(dir, [], 0x41ED);
        cpio.Add("bin/busybox", File.ReadAllBytes(Shell.Which("busybox")!), 0x81ED);
        foreach (string m in order)
            cpio.Add($"lib/{Path.GetFileName(m)}.ko", File.ReadAllBytes($"{modules}/{m}.ko"), 0x81A4);
        cpio.Add("init", Encoding.ASCII.GetBytes(
            "#!/bin/busybox sh\n" +
            "/bin/busybox mount -t devtmpfs dev /dev\n" +
            "/bin/busybox mount -t sysfs sys /sys\n" +
            "/bin/busybox mount -t proc proc /proc\n" +
            string.Concat(order.Select(m => $"/bin/busybox insmod /lib/{Path.GetFileName(m)}.ko\n")) +
            "/bin/busybox sleep 1\n" +
            "d=/sys/bus/pci/devices/0000:00:01.0\n" +
            "echo PCI $(/bin/busybox cat $d/vendor $d/device) IRQ $(/bin/busybox cat $d/irq) > /dev/ttyS0\n" +
            "echo DISK $(/bin/busybox dd if=/dev/vda bs=16 count=1 2>/dev/null) > /dev/ttyS0\n" +
            "echo INTR $(/bin/busybox grep virtio0 /proc/interrupts) > /dev/ttyS0\n" +
            "/bin/busybox printf '\\000' | /bin/busybox dd of=/dev/port bs=1 seek=244 count=1\n" +
            "/bin/busybox sleep 5\n"), 0x81ED);
        string disk = Path.Combine(Path.GetTempPath(), $"nc-pcidisk-{Guid.NewGuid():N}.img");
        File.WriteAllBytes(disk, [.. "NETCORE-PCI-DISK"u8, .. new byte[1 << 20]]);
        try
        {
            var console = new MemoryStream();
            await using var vm = MicroVm.Create(new MicroVmOptions
            {
                KernelPath = kernel,
                Initrd = cpio.Finish(),
                CommandLine = "console=ttyS0 reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.dumbkbd rdinit=/init",
                MemorySize = 512UL << 20,
                Console = console,
                VirtioTransport = VirtioTransport.LegacyPci,
                Disks = [disk],
            });
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            int? status = await vm.RunAsync(cts.Token);
            string text = Encoding.ASCII.GetString(console.ToArray());
            output.WriteLine(text);
            // The IRQ number is the kernel's choice; the IOAPIC pin (hwirq) and trigger come from the MP table.
            Assert.Matches(@"PCI 0x1af4 0x1001 IRQ \d+", text);
            Assert.Contains("DISK NETCORE-PCI-DISK", text, StringComparison.Ordinal);
            Assert.Matches(@"INTR \d+: +[1-9]\d* +IO-APIC +16-edge +virtio0", text);
            Assert.Equal(1, status);
        }
        finally
        {
            File.Delete(disk);
        }
    }

    [LinuxFact(Netns = true)]
    public async Task VirtioNetCarriesAnArpExchangeWithTheKernelThroughATap()
    {
        using var ns = TestNetns.Create("vnet");
        using var client = NetlinkClient.Open(ns.Name);
        using TapDevice tap = await client.CreateTapAsync("nctap0");
        ns.Exec("sysctl -qw net.ipv6.conf.nctap0.disable_ipv6=1");
        ns.Exec("ip addr add 10.99.0.1/24 dev nctap0");
        await client.SetLinkUpAsync(tap.Index);

        using var mem = GuestMemory.Create(1 << 20);
        byte[] mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        using var net = new VirtioNet(tap, mac);
        int irqs = 0;
        var t = new VirtioMmioTransport(mem, net, () => Interlocked.Increment(ref irqs));
        var drv = new TestVirtioDriver(mem, t, queues: 2);
        Assert.Equal(0x12u, drv.R(0x103) & 0xFF); // config.mac[3]
        for (int i = 0; i < 4; i++)
            drv.Submit(0, (0x40000UL + (ulong)i * 0x1000, 2048, true));
        drv.Notify(0);

        // virtio_net_hdr_v1 (12 zero bytes) + an ARP request "who has 10.99.0.1? tell 10.99.0.2".
        byte[] frame = [.. new byte[12],
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, .. mac, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, .. mac, 10, 99, 0, 2, 0, 0, 0, 0, 0, 0, 10, 99, 0, 1];
        mem.Write(0x30000, frame);
        drv.Submit(1, (0x30000, (uint)frame.Length, false));
        drv.Notify(1);
        Assert.Equal(1, drv.UsedIdx(1));
        Assert.Equal(1, net.TxFrames);

        byte[]? reply = null;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        int seen = 0;
        while (reply is null && DateTime.UtcNow < deadline)
        {
            while (seen < drv.UsedIdx(0))
            {
                var (id, len) = drv.UsedElem(0, seen++);
                byte[] got = mem.GetSpan(0x40000UL + id * 0x1000UL, (int)len).ToArray();
                if (got.Length >= 12 + 42 && got[12 + 12] == 0x08 && got[12 + 13] == 0x06 && got[12 + 21] == 2)
                    reply = got;
            }
            await Task.Delay(10);
        }
        Assert.NotNull(reply);
        // The receive thread publishes the used entry before it signals the interrupt: wait for the
        // signal rather than read the count at once (a preempted receive thread is still between the two).
        while (Volatile.Read(ref irqs) < 2 && DateTime.UtcNow < deadline)
            await Task.Delay(10);
        Assert.Equal(1, reply[10]); // num_buffers = 1 without MRG_RXBUF
        Assert.Equal(mac, reply.AsSpan(12, 6).ToArray()); // to our MAC
        Assert.Equal(new byte[] { 10, 99, 0, 1 }, reply.AsSpan(12 + 28, 4).ToArray()); // sender IP
        Assert.True(Volatile.Read(ref irqs) >= 2, $"{irqs} interrupts");
        output.WriteLine($"rx frames {net.RxFrames}, interrupts {irqs}");
    }
}
