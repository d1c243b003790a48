using System.Buffers.Binary;
using System.Text;

namespace Netcore.Xdp.Elf;

/// <summary>One section header (Elf64_Shdr, elf(5)).</summary>
internal sealed record ElfSection(int Index, string Name, uint Type, ulong Flags, ulong Offset, ulong Size, uint Link, uint Info, ulong EntSize)
{
    public const uint SHT_PROGBITS = 1, SHT_SYMTAB = 2, SHT_STRTAB = 3, SHT_NOBITS = 8, SHT_REL = 9;
    public const ulong SHF_EXECINSTR = 0x4;
}

/// <summary>One symbol (Elf64_Sym).</summary>
internal sealed record ElfSymbol(int Index, string Name, byte Info, ushort Section, ulong Value, ulong Size)
{
    public const int STT_NOTYPE = 0, STT_OBJECT = 1, STT_FUNC = 2, STT_SECTION = 3;
    public const int STB_LOCAL = 0, STB_GLOBAL = 1, STB_WEAK = 2;
    public int Type => Info & 0xf;
    public int Bind => Info >> 4;
}

/// <summary>One relocation (Elf64_Rel; BPF objects use REL, not RELA).</summary>
internal readonly record struct ElfRel(ulong Offset, int Symbol, uint Type);

/// <summary>
/// A minimal reader of 64-bit little-endian relocatable ELF files as clang -target bpf writes
/// them (elf(5); e_machine EM_BPF = 247). One bounds check per read.
/// </summary>
internal sealed class ElfFile
{
    public const ushort EM_BPF = 247;
    private readonly byte[] _data;

    private ElfFile(byte[] data, List<ElfSection> sections, List<ElfSymbol> symbols)
    {
        _data = data;
        Sections = sections;
        Symbols = symbols;
    }

    public IReadOnlyList<ElfSection> Sections { get; }

    public IReadOnlyList<ElfSymbol> Symbols { get; }

    public ElfSection? Find(string name) => Sections.FirstOrDefault(s => s.Name == name);

    public ReadOnlyMemory<byte> Data(ElfSection s)
    {
        if (s.Type == ElfSection.SHT_NOBITS)
        {
            // .bss: zeros of the section's size; BPF maps cap values far below this.
            if (s.Size > 1 << 28)
                throw new BpfObjectException($"section {s.Name}: {s.Size} bytes of .bss is not plausible");
            return new byte[s.Size];
        }
        return _data.AsMemory(checked((int)s.Offset), checked((int)s.Size));
    }

    /// <summary>Relocations that apply to section <paramref name="target"/>.</summary>
    public List<ElfRel> RelocationsFor(ElfSection target)
    {
        try
        {
            return RelocationsCore(target);
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or OverflowException)
        {
            throw new BpfObjectException("malformed ELF relocations: " + e.Message, e);
        }
    }

    private List<ElfRel> RelocationsCore(ElfSection target)
    {
        var list = new List<ElfRel>();
        foreach (var s in Sections)
        {
            if (s.Type != ElfSection.SHT_REL || s.Info != target.Index)
                continue;
            var d = Data(s).Span;
            for (int o = 0; o + 16 <= d.Length; o += 16)
            {
                ulong info = BinaryPrimitives.ReadUInt64LittleEndian(d[(o + 8)..]);
                list.Add(new ElfRel(BinaryPrimitives.ReadUInt64LittleEndian(d[o..]), (int)(info >> 32), (uint)info));
            }
        }
        return list;
    }

    public static ElfFile Parse(byte[] data)
    {
        try
        {
            return ParseCore(data);
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or OverflowException)
        {
            throw new BpfObjectException("malformed ELF object: " + e.Message, e);
        }
    }

    private static ElfFile ParseCore(byte[] data)
    {
        var d = data.AsSpan();
        // elf(5): e_ident = 0x7f 'E' 'L' 'F', EI_CLASS 2 (64-bit), EI_DATA 1 (little endian).
        if (d.Length < 64 || d[0] != 0x7f || d[1] != (byte)'E' || d[2] != (byte)'L' || d[3] != (byte)'F')
            throw new BpfObjectException("not an ELF file");
        if (d[4] != 2 || d[5] != 1)
            throw new BpfObjectException("only 64-bit little-endian ELF objects are supported (clang -target bpf on x86-64/arm64)");
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(d[18..]);
        if (machine != EM_BPF)
            throw new BpfObjectException($"ELF e_machine is {machine}, not EM_BPF (247): build with clang -target bpf");
        ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(d[40..]);
        ushort shentsize = BinaryPrimitives.ReadUInt16LittleEndian(d[58..]);
        ushort shnum = BinaryPrimitives.ReadUInt16LittleEndian(d[60..]);
        ushort shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(d[62..]);
        if (shentsize != 64 || shoff + (ulong)shnum * 64 > (ulong)d.Length || shstrndx >= shnum)
            throw new BpfObjectException("truncated ELF section header table");
        var raw = new (uint name, uint type, ulong flags, ulong off, ulong size, uint link, uint info, ulong entsize)[shnum];
        for (int i = 0; i < shnum; i++)
        {
            var h = d.Slice((int)shoff + i * 64, 64);
            raw[i] = (BinaryPrimitives.ReadUInt32LittleEndian(h), BinaryPrimitives.ReadUInt32LittleEndian(h[4..]),
                BinaryPrimitives.ReadUInt64LittleEndian(h[8..]), BinaryPrimitives.ReadUInt64LittleEndian(h[24..]),
                BinaryPrimitives.ReadUInt64LittleEndian(h[32..]), BinaryPrimitives.ReadUInt32LittleEndian(h[40..]),
                BinaryPrimitives.ReadUInt32LittleEndian(h[44..]), BinaryPrimitives.ReadUInt64LittleEndian(h[56..]));
            if (raw[i].type != ElfSection.SHT_NOBITS && raw[i].off + raw[i].size > (ulong)d.Length)
                throw new BpfObjectException($"ELF section {i} extends past the end of the file");
        }
        var shstr = raw[shstrndx];
        var sections = new List<ElfSection>(shnum);
        for (int i = 0; i < shnum; i++)
            sections.Add(new ElfSection(i, CString(d.Slice((int)shstr.off, (int)shstr.size), raw[i].name), raw[i].type, raw[i].flags, raw[i].off, raw[i].size, raw[i].link, raw[i].info, raw[i].entsize));
        var symbols = new List<ElfSymbol>();
        var symtab = sections.FirstOrDefault(s => s.Type == ElfSection.SHT_SYMTAB);
        if (symtab is not null)
        {
            var strtab = sections[(int)symtab.Link];
            var st = d.Slice((int)strtab.Offset, (int)strtab.Size);
            var sd = d.Slice((int)symtab.Offset, (int)symtab.Size);
            for (int o = 0, i = 0; o + 24 <= sd.Length; o += 24, i++)
            {
                var e = sd.Slice(o, 24);
                symbols.Add(new ElfSymbol(i, CString(st, BinaryPrimitives.ReadUInt32LittleEndian(e)), e[4],
                    BinaryPrimitives.ReadUInt16LittleEndian(e[6..]), BinaryPrimitives.ReadUInt64LittleEndian(e[8..]), BinaryPrimitives.ReadUInt64LittleEndian(e[16..])));
            }
        }
        return new ElfFile(data, sections, symbols);
    }

    internal static string CString(ReadOnlySpan<byte> table, uint offset)
    {
        if (offset >= table.Length)
            throw new BpfObjectException($"string offset {offset} outside its table");
        var s = table[(int)offset..];
        int n = s.IndexOf((byte)0);
        return Encoding.UTF8.GetString(n < 0 ? s : s[..n]);
    }
}
