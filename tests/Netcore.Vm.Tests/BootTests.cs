using System.Buffers.Binary;
using System.Text;
using Netcore.Vm.Boot;
using Netcore.Vm.Guest;
using Netcore.Vm.Kvm;
using Netcore.Vm.Memory;

namespace Netcore.Vm.Tests;

/// <summary>The boot structures against the machine's real Debian kernel, without running it.</summary>
public sealed class BootTests(ITestOutputHelper output)
{
    internal static string? KernelPath() =>
        Directory.Exists("/boot") ? Directory.GetFiles("/boot", "vmlinuz-*").OrderDescending().FirstOrDefault() : null;

    private static BzImage RealKernel()
    {
        string path = KernelPath() ?? throw new InvalidOperationException("no /boot/vmlinuz-* (install linux-image-amd64)");
        return BzImage.Load(path);
    }

    [KernelFact]
    public void RealKernelHeaderIsParsed()
    {
        string path = KernelPath()!;
        BzImage k = RealKernel();
        byte[] file = File.ReadAllBytes(path);
        output.WriteLine($"{path}: protocol {k.Protocol:x}, setup_sects {k.SetupSectors}, init_size 0x{k.InitSize:x}, initrd_addr_max 0x{k.InitrdAddressMax:x}, version {k.Version}");
        Assert.True(k.Protocol >= 0x020C);
        Assert.Equal(file[0x1F1] == 0 ? 4 : file[0x1F1], k.SetupSectors);
        Assert.Equal((k.SetupSectors + 1) * 512, k.KernelOffset);
        Assert.Equal(file.Length - k.KernelOffset, k.Kernel.Length);
        Assert.True(k.Relocatable);
        Assert.Equal(1, k.XLoadFlags & 1);
        Assert.True(k.CmdlineSize >= 255);
        Assert.True(k.InitSize > (uint)k.Kernel.Length);
        Assert.NotNull(k.Version);
        Assert.Contains(Path.GetFileName(path)["vmlinuz-".Length..], k.Version, StringComparison.Ordinal);
    }

    [Fact]
    public void BadImagesAreRejectedWithTheRuleTheyBreak()
    {
        byte[] img = new byte[0x1000];
        Assert.Contains("0xAA55", Assert.Throws<InvalidKernelImageException>(() => BzImage.Parse(img)).Message, StringComparison.Ordinal);
        img[0x1FE] = 0x55;
        img[0x1FF] = 0xAA;
        Assert.Contains("HdrS", Assert.Throws<InvalidKernelImageException>(() => BzImage.Parse(img)).Message, StringComparison.Ordinal);
        "HdrS"u8.CopyTo(img.AsSpan(0x202));
        BinaryPrimitives.WriteUInt16LittleEndian(img.AsSpan(0x206), 0x0204);
        Assert.Contains("2.12", Assert.Throws<InvalidKernelImageException>(() => BzImage.Parse(img)).Message, StringComparison.Ordinal);
        BinaryPrimitives.WriteUInt16LittleEndian(img.AsSpan(0x206), 0x020F);
        Assert.Contains("LOADED_HIGH", Assert.Throws<InvalidKernelImageException>(() => BzImage.Parse(img)).Message, StringComparison.Ordinal);
        img[0x211] = 1;
        Assert.Contains("XLF_KERNEL_64", Assert.Throws<InvalidKernelImageException>(() => BzImage.Parse(img)).Message, StringComparison.Ordinal);
        img[0x236] = 1;
        img[0x1F1] = 60;
        Assert.Contains("past the end", Assert.Throws<InvalidKernelImageException>(() => BzImage.Parse(img)).Message, StringComparison.Ordinal);
    }

    [KernelFact]
    public void ZeroPageE820CmdlineAndInitrdAreLaidOut()
    {
        BzImage k = RealKernel();
        string? initrdPath = Directory.GetFiles("/boot", "initrd.img-*").FirstOrDefault();
        byte[] initrd = initrdPath is null ? new byte[3 << 20] : File.ReadAllBytes(initrdPath);
        using var mem = GuestMemory.Create(512UL << 20);
        var opts = new LinuxBootOptions { CommandLine = "console=ttyS0 panic=1", Initrd = initrd, VcpuCount = 2 };
        LinuxBootLayout l = LinuxBoot.Load(mem, k, opts);

        Assert.Equal(0x100200UL, l.Entry);
        Assert.True(mem.GetSpan(0x10_0000, 4096).SequenceEqual(k.Kernel[..4096]));
        Span<byte> bp = mem.GetSpan(l.BootParams, 4096);
        Assert.Equal(0xAA55, BinaryPrimitives.ReadUInt16LittleEndian(bp[0x1FE..]));
        Assert.Equal(0x53726448u, BinaryPrimitives.ReadUInt32LittleEndian(bp[0x202..]));
        Assert.Equal(k.Protocol, BinaryPrimitives.ReadUInt16LittleEndian(bp[0x206..]));
        Assert.Equal(0xFF, bp[0x210]);
        Assert.Equal(0x81, bp[0x211] & 0x81);
        uint cmdPtr = BinaryPrimitives.ReadUInt32LittleEndian(bp[0x228..]);
        Assert.Equal("console=ttyS0 panic=1", Encoding.ASCII.GetString(mem.GetSpan(cmdPtr, 21)));
        Assert.Equal(0, mem.Read<byte>(cmdPtr + 21));

        uint rdImage = BinaryPrimitives.ReadUInt32LittleEndian(bp[0x218..]);
        uint rdSize = BinaryPrimitives.ReadUInt32LittleEndian(bp[0x21C..]);
        Assert.Equal((ulong)rdImage, l.InitrdAddress);
        Assert.Equal((uint)initrd.Length, rdSize);
        Assert.Equal(0u, rdImage % 4096);
        Assert.True(rdImage + rdSize - 1 <= k.InitrdAddressMax);
        Assert.True(rdImage >= l.KernelEnd, "the initrd must not overlap the kernel's init_size area");
        Assert.True(rdImage + rdSize <= 512UL << 20);
        Assert.True((512UL << 20) - (rdImage + rdSize) < 4096 * 2, "placed as high as possible");
        Assert.True(mem.GetSpan(rdImage, 64).SequenceEqual(initrd.AsSpan(0, 64)));

        int n = bp[0x1E8];
        Assert.Equal(2, n);
        byte[] bpCopy = bp.ToArray();
        var e820 = Enumerable.Range(0, n).Select(i => bpCopy.AsSpan(0x2D0 + i * 20, 20).ToArray())
            .Select(e => new E820Entry(BinaryPrimitives.ReadUInt64LittleEndian(e), BinaryPrimitives.ReadUInt64LittleEndian(e.AsSpan(8)), BinaryPrimitives.ReadUInt32LittleEndian(e.AsSpan(16))))
            .ToList();
        Assert.Equal(new E820Entry(0, 0x9FC00, 1), e820[0]);
        Assert.Equal(new E820Entry(0x100000, (512UL << 20) - 0x100000, 1), e820[1]);

        // MP table: floating pointer and configuration table checksums, two processors.
        Span<byte> fp = mem.GetSpan(LinuxBoot.EbdaStart, 16);
        Assert.Equal("_MP_", Encoding.ASCII.GetString(fp[..4]));
        Assert.Equal(0, Sum(fp));
        uint tableAddr = BinaryPrimitives.ReadUInt32LittleEndian(fp[4..]);
        int tableLen = mem.Read<ushort>(tableAddr + 4);
        Span<byte> table = mem.GetSpan(tableAddr, tableLen);
        Assert.Equal("PCMP", Encoding.ASCII.GetString(table[..4]));
        Assert.Equal(0, Sum(table));
        Assert.Equal(0, table[44]);
        Assert.Equal(0, table[64]);
        Assert.Equal(1, table[65]);
        Assert.Equal(3, table[44 + 3] & 3); // BSP enabled
    }

    private static byte Sum(ReadOnlySpan<byte> d)
    {
        byte s = 0;
        foreach (byte b in d)
            s += b;
        return s;
    }

    [Fact]
    public void InitrdThatDoesNotFitIsRefused()
    {
        using var mem = GuestMemory.Create(16UL << 20);
        byte[] img = MinimalImage();
        BzImage k = BzImage.Parse(img);
        Assert.Throws<InvalidOperationException>(() => LinuxBoot.PlaceInitrd(mem, k, kernelEnd: 15UL << 20, size: 2 << 20));
        Assert.Equal((14UL << 20), LinuxBoot.PlaceInitrd(mem, k, kernelEnd: 4UL << 20, size: 2 << 20));
    }

    internal static byte[] MinimalImage()
    {
        byte[] img = new byte[0x2000];
        img[0x1F1] = 1;
        img[0x1FE] = 0x55;
        img[0x1FF] = 0xAA;
        img[0x201] = 0x66;
        "HdrS"u8.CopyTo(img.AsSpan(0x202));
        BinaryPrimitives.WriteUInt16LittleEndian(img.AsSpan(0x206), 0x020F);
        img[0x211] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(img.AsSpan(0x22C), 0x7FFF_FFFF);
        img[0x236] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(img.AsSpan(0x238), 2048);
        return img;
    }

    [Fact]
    public void IdentityPageTablesAndGdtWalkCorrectly()
    {
        using var mem = GuestMemory.Create(8UL << 20);
        ulong cr3 = X86Setup.WriteIdentityPageTables(mem, 0x9000, 1UL << 30, user: true, protectFirstLargePage: true);
        foreach (ulong va in new ulong[] { 0, 0x1234, 0x20_0000, 0x3FFF_FFFF, 0x1234_5678 })
        {
            var t = X86Setup.Translate(mem, cr3, va);
            Assert.NotNull(t);
            Assert.Equal(va, t.Value.PhysicalAddress);
            Assert.True(t.Value.Writable);
            Assert.Equal(va >= 0x20_0000, t.Value.User);
        }
        Assert.Null(X86Setup.Translate(mem, cr3, 1UL << 30));
        Assert.Null(X86Setup.Translate(mem, cr3, 0xFFFF_8000_0000_0000));

        ulong[] gdt = X86Setup.DefaultGdt();
        Assert.Equal(0x00AF9B000000FFFFUL, gdt[1]); // the flat 64-bit code descriptor every VMM uses
        Assert.Equal(0x00CF93000000FFFFUL, gdt[2]);
        KvmSegment code = X86Setup.ToSegment(gdt[1], X86Setup.KernelCode);
        Assert.Equal((1, 0, 11, 1, 0xFFFFFFFFu), (code.L, code.Db, code.Type, code.G, code.Limit));
        KvmSegment user = X86Setup.ToSegment(gdt[4], X86Setup.UserData);
        Assert.Equal(3, user.Dpl);
        Properties.Check(FsCheck.Fluent.Gen.Select(FsCheck.Fluent.Gen.Choose(0, int.MaxValue), x => (uint)x), b =>
        {
            ulong d = X86Setup.Descriptor(b, 0xABCDE, 0x93, 0xC);
            KvmSegment s = X86Setup.ToSegment(d, 0x10);
            return s.Base == b && s.Limit == 0xABCDEFFF && s.Type == 3 && s.Db == 1;
        }, 200, 7);
    }

    [KernelFact(Kvm = true)]
    public void VcpuIsSetUpForThe64BitEntry()
    {
        using var kvm = KvmSystem.Open();
        using var mem = GuestMemory.Create(256UL << 20);
        using var vm = kvm.CreateVm();
        vm.SetMemory(mem);
        vm.CreateIrqchip();
        var cpu = vm.CreateVcpu(0);
        LinuxBootLayout l = LinuxBoot.Load(mem, RealKernel());
        LinuxBoot.SetupVcpu(cpu, mem, l);
        KvmRegs r = cpu.GetRegs();
        KvmSregs s = cpu.GetSregs();
        Assert.Equal(l.Entry, r.Rip);
        Assert.Equal(LinuxBoot.BootParamsAddress, r.Rsi);
        Assert.Equal(0x8000_0000UL, s.Cr0 & 0x8000_0000);
        Assert.Equal(0x400UL, s.Efer & 0x400);
        Assert.Equal(1, s.Cs.L);
        Assert.Equal(0, s.Cs.Dpl);
        Assert.Equal(l.Entry, X86Setup.Translate(mem, s.Cr3, l.Entry)!.Value.PhysicalAddress);
        KvmCpuidEntry leaf1 = cpu.GetCpuid().First(e => e.Function == 1);
        Assert.Equal(1u << 31, leaf1.Ecx & (1u << 31));
        Assert.Equal(0u, leaf1.Ebx >> 24);
        Assert.Contains(cpu.GetCpuid(), e => e.Function == 0x4000_0000 && e.Ebx == 0x4B4D564B);
        Assert.Equal(0x700u, cpu.GetLapic().GetRegister(KvmLapicState.Lint0Offset) & 0x1_0700);
        Assert.Equal(1UL, cpu.GetMsrs([0x1A0u])[0].Data & 1);
    }

    [Fact]
    public void CpuidNormalizationSetsApicIdsPerVcpu()
    {
        KvmCpuidEntry[] input = [new() { Function = 1, Ebx = 0xFF00_0800 }, new() { Function = 0xB, Edx = 9 }];
        KvmCpuidEntry[] n = Cpuid.Normalize(input, apicId: 3, vcpuCount: 4);
        Assert.Equal(3u, n[0].Ebx >> 24);
        Assert.Equal(4u, (n[0].Ebx >> 16) & 0xFF);
        Assert.Equal(0x0800u, n[0].Ebx & 0xFFFF);
        Assert.Equal(3u, n[1].Edx);
        Assert.Equal(1u << 28, n[0].Edx & (1u << 28));
        Assert.Contains(n, e => e.Function == 0x4000_0000 && e.Eax == 0x4000_0001);
        Assert.Equal(0xFF00_0800u, input[0].Ebx); // input untouched
    }
}

/// <summary>A fact that needs a bzImage in /boot (linux-image-amd64) and optionally /dev/kvm.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class KernelFactAttribute : FactAttribute
{
    /// <summary>Needs /dev/kvm too.</summary>
    public bool Kvm { get; set; }

    /// <inheritdoc />
    public override string? Skip
    {
        get => base.Skip ?? Requirements.All(
            BootTests.KernelPath() is null ? "needs a kernel image /boot/vmlinuz-* (apt-get install linux-image-amd64)" : null,
            Kvm ? Requirements.Kvm() : null);
        set => base.Skip = value;
    }
}

public sealed class ElfAndPvhTests
{
    /// <summary>A minimal ELF64 x86-64 image: one PT_LOAD (code at 0x1000000, bss tail) and a PT_NOTE with the Xen PVH entry.</summary>
    internal static byte[] SyntheticVmlinux()
    {
        byte[] f = new byte[0x400];
        new byte[] { 0x7F, (byte)'E', (byte)'L', (byte)'F' }.CopyTo(f, 0);
        f[4] = 2; f[5] = 1; f[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x10), 2); // ET_EXEC
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x12), 62);
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(0x18), 0x100_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(0x20), 0x40);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x36), 56);
        BinaryPrimitives.WriteUInt16LittleEndian(f.AsSpan(0x38), 2);
        Span<byte> ph = f.AsSpan(0x40, 56);
        BinaryPrimitives.WriteUInt32LittleEndian(ph, 1);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], 0x200);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[16..], 0xFFFF_FFFF_8100_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[24..], 0x100_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], 0x100);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], 0x3000);
        ph = f.AsSpan(0x78, 56);
        BinaryPrimitives.WriteUInt32LittleEndian(ph, 4);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[8..], 0x100);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[32..], 20);
        BinaryPrimitives.WriteUInt64LittleEndian(ph[40..], 20);
        Span<byte> note = f.AsSpan(0x100, 20);
        BinaryPrimitives.WriteUInt32LittleEndian(note, 4);
        BinaryPrimitives.WriteUInt32LittleEndian(note[4..], 4);
        BinaryPrimitives.WriteUInt32LittleEndian(note[8..], 18);
        "Xen\0"u8.CopyTo(note[12..]);
        BinaryPrimitives.WriteUInt32LittleEndian(note[16..], 0x100_0040);
        for (int i = 0; i < 0x100; i++)
            f[0x200 + i] = (byte)(i + 1);
        return f;
    }

    [Fact]
    public void VmlinuxSegmentsAndPvhEntryAreLoaded()
    {
        ElfKernel k = ElfKernel.Parse(SyntheticVmlinux());
        Assert.Equal(0x100_0000UL, k.Entry);
        Assert.Equal(0x100_0040u, k.PvhEntry);
        using var mem = GuestMemory.Create(32UL << 20);
        mem.GetSpan(0x100_0000, 0x3000).Fill(0xCC);
        ulong end = k.Load(mem);
        Assert.Equal(0x100_3000UL, end);
        Assert.Equal(1, mem.Read<byte>(0x100_0000));
        Assert.Equal(0, mem.Read<byte>(0x100_0100)); // bss zeroed
        Assert.Equal(0, mem.Read<byte>(0x100_2FFF));

        ulong si = PvhBoot.WriteStartInfo(mem, "console=ttyS0", initrdAddress: 0x200_0000, initrdSize: 0x1234);
        Assert.Equal(PvhBoot.StartInfoMagic, mem.Read<uint>(si));
        Assert.Equal(1u, mem.Read<uint>(si + 4));
        Assert.Equal(1u, mem.Read<uint>(si + 12));
        Assert.Equal(0x1234UL, mem.Read<ulong>(mem.Read<ulong>(si + 16) + 8));
        Assert.Equal("console=ttyS0", Encoding.ASCII.GetString(mem.GetSpan(mem.Read<ulong>(si + 24), 13)));
        Assert.Equal(2u, mem.Read<uint>(si + 48));
        Assert.Equal(0x100000UL, mem.Read<ulong>(mem.Read<ulong>(si + 40) + 24));
    }

    [Fact]
    public void BrokenElfIsRejected()
    {
        byte[] f = SyntheticVmlinux();
        f[0x12] = 3;
        Assert.Contains("EM_X86_64", Assert.Throws<InvalidKernelImageException>(() => ElfKernel.Parse(f)).Message, StringComparison.Ordinal);
        f = SyntheticVmlinux();
        BinaryPrimitives.WriteUInt64LittleEndian(f.AsSpan(0x40 + 32), 0x10000);
        Assert.Throws<InvalidKernelImageException>(() => ElfKernel.Parse(f));
        Assert.Throws<InvalidKernelImageException>(() => ElfKernel.Parse(new byte[100]));
    }

    [LinuxFact(Kvm = true)]
    public void PvhVcpuStartsFlat32BitWithStartInfoInEbx()
    {
        using var kvm = KvmSystem.Open();
        using var mem = GuestMemory.Create(32UL << 20);
        using var vm = kvm.CreateVm();
        vm.SetMemory(mem);
        var cpu = vm.CreateVcpu(0);
        PvhBoot.SetupVcpu(cpu, mem, 0x100_0040, PvhBoot.StartInfoAddress);
        KvmSregs s = cpu.GetSregs();
        KvmRegs r = cpu.GetRegs();
        Assert.Equal(1UL, s.Cr0 & 0x8000_0001);
        Assert.Equal(0UL, s.Efer);
        Assert.Equal((1, 0, 0xFFFFFFFFu), (s.Cs.Db, s.Cs.L, s.Cs.Limit));
        Assert.Equal(0x100_0040UL, r.Rip);
        Assert.Equal(PvhBoot.StartInfoAddress, r.Rbx);
    }
}
