using Netcore.Vm.Boot;
using Netcore.Vm.Devices;
using Netcore.Vm.Devices.Pci;
using Netcore.Vm.Devices.Virtio;
using Netcore.Vm.Kvm;
using Netcore.Vm.Memory;

namespace Netcore.Vm;

/// <summary>How a <see cref="MicroVm"/> exposes its virtio devices to the guest.</summary>
public enum VirtioTransport
{
    /// <summary>
    /// virtio-mmio windows announced on the command line (virtio_mmio.device=...): needs a kernel with
    /// CONFIG_VIRTIO_MMIO and CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (Firecracker-style guest configs).
    /// </summary>
    Mmio,

    /// <summary>
    /// Legacy (transitional) virtio-pci functions on PCI bus 0, found through configuration
    /// mechanism #1 at 0xCF8/0xCFC with I/O BARs, INTA# routed to IOAPIC pins 16-23 by the MP
    /// table: what a stock distribution kernel (virtio_pci, virtio_blk, virtio_net as modules, no
    /// ACPI) enumerates without command-line help. At most 8 devices (one IOAPIC pin each).
    /// </summary>
    LegacyPci,
}

/// <summary>What a <see cref="MicroVm"/> boots and with which devices.</summary>
public sealed record MicroVmOptions
{
    /// <summary>Path of a bzImage (e.g. /boot/vmlinuz-*). Required.</summary>
    public required string KernelPath { get; init; }

    /// <summary>initramfs contents, or null.</summary>
    public byte[]? Initrd { get; init; }

    /// <summary>
    /// Kernel command line; virtio-mmio devices are appended automatically. With
    /// <see cref="VirtioTransport.LegacyPci"/> a <c>pci=off</c> option is removed and <c>pci=conf1</c>
    /// added when no other <c>pci=</c> option is given.
    /// </summary>
    public string CommandLine { get; init; } = new LinuxBootOptions().CommandLine;

    /// <summary>Guest RAM in bytes. Default 256 MiB.</summary>
    public ulong MemorySize { get; init; } = 256UL << 20;

    /// <summary>Number of vCPUs. Default 1.</summary>
    public int VcpuCount { get; init; } = 1;

    /// <summary>Where the serial console (ttyS0) writes. Default: nowhere.</summary>
    public Stream? Console { get; init; }

    /// <summary>Disk image files exposed as virtio-blk devices (vda, vdb, ...).</summary>
    public IReadOnlyList<string> Disks { get; init; } = [];

    /// <summary>Network devices: a tap (from Netcore.Netlink) and the guest MAC.</summary>
    public IReadOnlyList<(Netlink.TapDevice Tap, byte[] Mac)> Nics { get; init; } = [];

    /// <summary>How the disks and NICs are exposed. Default <see cref="VirtioTransport.Mmio"/>.</summary>
    public VirtioTransport VirtioTransport { get; init; } = VirtioTransport.Mmio;
}

/// <summary>
/// A Firecracker-style microVM for hosts with hardware virtualization: a bzImage booted directly at
/// its 64-bit entry, in-kernel irqchip and PIT, a 16550 console on ttyS0 (IRQ 4 through an irqfd),
/// isa-debug-exit at 0xF4, i8042 reset, and virtio block and network devices over virtio-mmio or
/// legacy virtio-pci (<see cref="MicroVmOptions.VirtioTransport"/>).
/// </summary>
public sealed class MicroVm : IAsyncDisposable
{
    /// <summary>Guest-physical address of the first virtio-mmio window.</summary>
    public const ulong VirtioMmioBase = LinuxBoot.MmioGapStart;

    /// <summary>GSI of the first virtio-mmio device.</summary>
    public const uint VirtioFirstIrq = 5;

    /// <summary>Most virtio devices on the legacy PCI transport (one IOAPIC pin each, 16-23).</summary>
    public const int MaxPciDevices = MpTable.IoApicPins - MpTable.FirstPciPin;

    private readonly KvmSystem _kvm;
    private readonly VirtualMachine _vm;
    private readonly GuestMemory _memory;
    private readonly List<IDisposable> _owned = [];
    private readonly List<VcpuRunner> _runners = [];

    private MicroVm(MicroVmOptions options)
    {
        _kvm = KvmSystem.Open();
        try
        {
            // RAM stops at the 32-bit MMIO gap and resumes at 4 GiB.
            ulong low = Math.Min(options.MemorySize, LinuxBoot.MmioGapStart);
            var ranges = new List<(ulong GuestAddress, ulong Size)> { (0UL, low) };
            if (options.MemorySize > low)
                ranges.Add((LinuxBoot.MmioGapEnd, options.MemorySize - low));
            _memory = GuestMemory.Create(ranges);
            _vm = _kvm.CreateVm();
            _vm.SetMemory(_memory);
            _vm.CreateIrqchip();
            _vm.CreatePit();

            var serialIrq = new EventFd();
            _owned.Add(serialIrq);
            _vm.RegisterIrqfd(serialIrq, 4);
            Serial = new Serial16550(options.Console, () => serialIrq.Signal(), fifoCapacity: 64);
            _vm.IoBus.Register(Serial16550.Com1, 8, Serial);
            DebugExit = new DebugExitDevice(_vm);
            _vm.IoBus.Register(DebugExitDevice.Port, 1, DebugExit);
            _vm.IoBus.Register(I8042Device.DataPort, 5, new I8042Device(_vm));

            bool pci = options.VirtioTransport == VirtioTransport.LegacyPci;
            if (pci && options.Disks.Count + options.Nics.Count > MaxPciDevices)
                throw new ArgumentException($"at most {MaxPciDevices} virtio devices on the legacy PCI transport (one IOAPIC pin each)", nameof(options));
            var cmdline = new System.Text.StringBuilder(pci ? PciCommandLine(options.CommandLine) : options.CommandLine);
            var pciInterrupts = new List<MpPciInterrupt>();
            if (pci)
            {
                Pci = new PciHostBridge();
                _vm.IoBus.Register(PciHostBridge.ConfigAddressPort, PciHostBridge.ConfigPortCount, Pci);
                _vm.IoBus.Register(PciHostBridge.IoWindowBase, PciHostBridge.IoWindowSize, Pci.IoWindow);
            }
            uint irq = VirtioFirstIrq;
            ulong mmio = VirtioMmioBase;
            IEnumerable<IVirtioDevice> devices = options.Disks.Select(d => (IVirtioDevice)new VirtioBlock(d))
                .Concat(options.Nics.Select(n => (IVirtioDevice)new VirtioNet(n.Tap, n.Mac)));
            foreach (IVirtioDevice dev in devices)
            {
                if (dev is IDisposable disposable)
                    _owned.Add(disposable);
                var ev = new EventFd();
                _owned.Add(ev);
                if (pci)
                {
                    int slot = Pci!.FreeSlot;
                    byte pin = (byte)(MpTable.FirstPciPin + pciInterrupts.Count);
                    _vm.RegisterIrqfd(ev, pin);
                    Pci.Attach(new VirtioPciLegacyDevice(_memory, dev, () => ev.Signal(), pin, PciHostBridge.PreassignedIoBase(slot)));
                    pciInterrupts.Add(new MpPciInterrupt(slot, pin));
                    continue;
                }
                _vm.RegisterIrqfd(ev, irq);
                _vm.MmioBus.Register(mmio, VirtioMmioTransport.WindowSize, new VirtioMmioTransport(_memory, dev, () => ev.Signal()));
                // Documentation/admin-guide/kernel-parameters.txt: virtio_mmio.device=<size>@<baseaddr>:<irq>
                cmdline.Append(System.Globalization.CultureInfo.InvariantCulture, $" virtio_mmio.device=512@0x{mmio:x}:{irq}");
                irq++;
                mmio += 0x1000;
            }
            PciInterrupts = pciInterrupts;

            BzImage image = BzImage.Load(options.KernelPath);
            Layout = LinuxBoot.Load(_memory, image, new LinuxBootOptions
            {
                CommandLine = cmdline.ToString(),
                Initrd = options.Initrd,
                VcpuCount = options.VcpuCount,
                PciInterrupts = pciInterrupts,
            });
            for (int i = 0; i < options.VcpuCount; i++)
            {
                Vcpu cpu = _vm.CreateVcpu(i);
                if (i == 0)
                {
                    LinuxBoot.SetupVcpu(cpu, _memory, Layout, options.VcpuCount);
                }
                else
                {
                    // Application processors wait for INIT/SIPI from the BSP; they only need CPUID and LINT.
                    cpu.SetCpuid(Cpuid.Normalize(_kvm.GetSupportedCpuid(), i, options.VcpuCount));
                    cpu.SetMsrs(LinuxBoot.BootMsrs());
                    LinuxBoot.ConfigureLint(cpu);
                }
            }
        }
        catch
        {
            DisposeCore();
            throw;
        }
    }

    /// <summary>Creates the VM and loads the kernel; call <see cref="RunAsync"/> to boot it.</summary>
    public static MicroVm Create(MicroVmOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new MicroVm(options);
    }

    /// <summary>
    /// The command line for the PCI transport: without <c>pci=off</c>, and with <c>pci=conf1</c>
    /// (arch/x86/pci: use configuration mechanism #1 directly, no BIOS/ACPI probing) unless another
    /// <c>pci=</c> option is there.
    /// </summary>
    internal static string PciCommandLine(string commandLine)
    {
        List<string> words = [.. commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries).Where(w => w != "pci=off")];
        if (!words.Any(w => w.StartsWith("pci=", StringComparison.Ordinal)))
            words.Add("pci=conf1");
        return string.Join(' ', words);
    }

    /// <summary>The PCI bus with the virtio functions when <see cref="MicroVmOptions.VirtioTransport"/> is <see cref="VirtioTransport.LegacyPci"/>, else null.</summary>
    public PciHostBridge? Pci { get; }

    /// <summary>The PCI devices and the IOAPIC pin of their INTA#, as described in the MP table (empty for virtio-mmio).</summary>
    public IReadOnlyList<MpPciInterrupt> PciInterrupts { get; } = [];

    /// <summary>Where the kernel, zero page and initrd went.</summary>
    public LinuxBootLayout Layout { get; }

    /// <summary>The console UART (feed it input with <see cref="Serial16550.EnqueueInput"/>).</summary>
    public Serial16550 Serial { get; }

    /// <summary>The debug-exit device.</summary>
    public DebugExitDevice DebugExit { get; }

    /// <summary>The underlying VM (buses, memory, vCPUs).</summary>
    public VirtualMachine Vm => _vm;

    /// <summary>
    /// Boots: one OS thread per vCPU. Completes when the guest writes to the debug-exit port
    /// (returns its status), resets (i8042, triple fault on reboot=k: returns null), or
    /// <paramref name="cancellationToken"/> fires (every vCPU is kicked out and the call throws).
    /// </summary>
    public async Task<int?> RunAsync(CancellationToken cancellationToken = default)
    {
        foreach (Vcpu cpu in _vm.Vcpus)
            _runners.Add(_vm.StartVcpu(cpu));
        using var reg = cancellationToken.Register(() => _vm.RequestStop());
        try
        {
            await Task.WhenAny(_runners.Select(r => r.Completion)).ConfigureAwait(false);
        }
        finally
        {
            _vm.RequestStop(_vm.ExitStatus);
            foreach (var r in _runners)
            {
                try
                {
                    await r.StopAsync().ConfigureAwait(false);
                }
                catch (KvmExitException e) when (e.Reason == KvmExitReason.Shutdown)
                {
                    // reboot=k ends in a triple fault: that is the guest's way of stopping.
                }
            }
        }
        cancellationToken.ThrowIfCancellationRequested();
        return _vm.ExitStatus;
    }

    private void DisposeCore()
    {
        _vm?.Dispose();
        foreach (var d in _owned)
            d.Dispose();
        _memory?.Dispose();
        _kvm.Dispose();
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        foreach (var r in _runners)
            await r.DisposeAsync().ConfigureAwait(false);
        DisposeCore();
    }
}
