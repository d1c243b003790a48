using System.Buffers.Binary;

namespace Netcore.Vm.Boot;

/// <summary>The image is not a kernel this loader can boot; the message names the rule it broke.</summary>
public sealed class InvalidKernelImageException : FormatException
{
    /// <summary>Creates the exception.</summary>
    public InvalidKernelImageException(string message) : base(message) { }
}

/// <summary>
/// A parsed x86 bzImage: the real-mode setup header and the protected-mode kernel that follows it
/// (Documentation/arch/x86/boot.rst, "The real-mode kernel header").
/// </summary>
public sealed class BzImage
{
    /// <summary>Offset of the setup header in the image and in boot_params (hdr).</summary>
    public const int HeaderOffset = 0x1F1;

    /// <summary>Lowest boot protocol this loader accepts: 2.12 added xloadflags (XLF_KERNEL_64) and the 64-bit entry contract.</summary>
    public const ushort MinimumProtocol = 0x020C;

    private readonly byte[] _image;

    private BzImage(byte[] image)
    {
        _image = image;
        ReadOnlySpan<byte> b = image;
        // boot.rst: "boot_flag 0x1FE: 0xAA55 magic number".
        if (b.Length < 0x268 || BinaryPrimitives.ReadUInt16LittleEndian(b[0x1FE..]) != 0xAA55)
            throw new InvalidKernelImageException("no boot_flag 0xAA55 at 0x1FE: not an x86 boot image");
        // boot.rst: "header 0x202: Magic signature HdrS" (protocol 2.00+).
        if (BinaryPrimitives.ReadUInt32LittleEndian(b[0x202..]) != 0x53726448)
            throw new InvalidKernelImageException("no \"HdrS\" signature at 0x202: boot protocol older than 2.00");
        Protocol = BinaryPrimitives.ReadUInt16LittleEndian(b[0x206..]);
        if (Protocol < MinimumProtocol)
            throw new InvalidKernelImageException($"boot protocol {Protocol >> 8}.{Protocol & 0xFF:D2} is older than 2.12, which the 64-bit entry needs");
        // boot.rst: "setup_sects: if this field is 0, the real value is 4".
        SetupSectors = b[0x1F1] == 0 ? 4 : b[0x1F1];
        LoadFlags = b[0x211];
        // boot.rst: "LOADED_HIGH (bit 0): protected-mode code is loaded at 0x100000" - required for bzImage.
        if ((LoadFlags & 1) == 0)
            throw new InvalidKernelImageException("loadflags lacks LOADED_HIGH: a zImage, not a bzImage");
        XLoadFlags = BinaryPrimitives.ReadUInt16LittleEndian(b[0x236..]);
        // boot.rst: "XLF_KERNEL_64 (bit 0): this kernel has the legacy 64-bit entry point at 0x200".
        if ((XLoadFlags & 1) == 0)
            throw new InvalidKernelImageException("xloadflags lacks XLF_KERNEL_64: no 64-bit entry point at 0x200");
        InitrdAddressMax = BinaryPrimitives.ReadUInt32LittleEndian(b[0x22C..]);
        KernelAlignment = BinaryPrimitives.ReadUInt32LittleEndian(b[0x230..]);
        Relocatable = b[0x234] != 0;
        CmdlineSize = BinaryPrimitives.ReadUInt32LittleEndian(b[0x238..]);
        PreferredAddress = BinaryPrimitives.ReadUInt64LittleEndian(b[0x258..]);
        InitSize = BinaryPrimitives.ReadUInt32LittleEndian(b[0x260..]);
        HeaderEnd = 0x202 + b[0x201]; // boot.rst: byte 0x201 is the length of the header beyond 0x202
        KernelOffset = (SetupSectors + 1) * 512;
        if (KernelOffset >= b.Length)
            throw new InvalidKernelImageException($"setup_sects {SetupSectors} points past the end of the {b.Length}-byte image");
        int versionPtr = BinaryPrimitives.ReadUInt16LittleEndian(b[0x20E..]);
        if (versionPtr != 0 && versionPtr + 0x200 < b.Length)
        {
            ReadOnlySpan<byte> v = b[(versionPtr + 0x200)..];
            int end = v.IndexOf((byte)0);
            Version = System.Text.Encoding.ASCII.GetString(v[..(end < 0 ? Math.Min(v.Length, 128) : end)]);
        }
    }

    /// <summary>Parses and validates an image.</summary>
    public static BzImage Parse(byte[] image)
    {
        ArgumentNullException.ThrowIfNull(image);
        return new BzImage(image);
    }

    /// <summary>Reads and parses a bzImage file (e.g. /boot/vmlinuz-*).</summary>
    public static BzImage Load(string path) => Parse(File.ReadAllBytes(path));

    /// <summary>Boot protocol version (0x020F = 2.15).</summary>
    public ushort Protocol { get; }

    /// <summary>Sectors of real-mode setup code after the boot sector.</summary>
    public int SetupSectors { get; }

    /// <summary>loadflags.</summary>
    public byte LoadFlags { get; }

    /// <summary>xloadflags.</summary>
    public ushort XLoadFlags { get; }

    /// <summary>Highest address the initrd may occupy (initrd_addr_max).</summary>
    public uint InitrdAddressMax { get; }

    /// <summary>Physical alignment the kernel needs when relocated.</summary>
    public uint KernelAlignment { get; }

    /// <summary>relocatable_kernel.</summary>
    public bool Relocatable { get; }

    /// <summary>Largest command line without the terminating zero (cmdline_size).</summary>
    public uint CmdlineSize { get; }

    /// <summary>pref_address.</summary>
    public ulong PreferredAddress { get; }

    /// <summary>Memory the kernel needs from its load address before it can relocate (init_size).</summary>
    public uint InitSize { get; }

    /// <summary>End offset of the setup header (copied into boot_params from 0x1F1 up to here).</summary>
    public int HeaderEnd { get; }

    /// <summary>File offset of the protected-mode kernel: (setup_sects + 1) × 512.</summary>
    public int KernelOffset { get; }

    /// <summary>The kernel_version string, when present.</summary>
    public string? Version { get; }

    /// <summary>The setup header bytes (0x1F1 up to <see cref="HeaderEnd"/>).</summary>
    public ReadOnlySpan<byte> Header => _image.AsSpan(HeaderOffset, HeaderEnd - HeaderOffset);

    /// <summary>The protected-mode kernel, loaded at 1 MiB.</summary>
    public ReadOnlySpan<byte> Kernel => _image.AsSpan(KernelOffset);
}
