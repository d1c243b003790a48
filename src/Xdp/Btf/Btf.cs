using System.Buffers.Binary;
using System.Text;

namespace Netcore.Xdp.Btf;

/// <summary>BTF kinds (BTF_KIND_* in include/uapi/linux/btf.h).</summary>
internal enum BtfKind
{
    Unknown = 0, Int = 1, Ptr = 2, Array = 3, Struct = 4, Union = 5, Enum = 6, Fwd = 7, Typedef = 8,
    Volatile = 9, Const = 10, Restrict = 11, Func = 12, FuncProto = 13, Var = 14, DataSec = 15,
    Float = 16, DeclTag = 17, TypeTag = 18, Enum64 = 19,
}

/// <summary>A member of a struct/union, a param of a func proto, a var of a datasec or an enum value.</summary>
internal readonly record struct BtfMember(string Name, uint Type, uint Offset, long Value);

/// <summary>One BTF type record. <see cref="RawOffset"/> is where it starts inside the type section.</summary>
internal sealed class BtfType
{
    public required uint Id { get; init; }
    public required BtfKind Kind { get; init; }
    public required string Name { get; init; }
    public required uint Vlen { get; init; }
    public required bool KindFlag { get; init; }
    /// <summary>Size for int/struct/union/enum/datasec/float; referenced type for ptr/typedef/modifiers/func/var.</summary>
    public required uint SizeOrType { get; init; }
    public required int RawOffset { get; init; }
    public BtfMember[] Members { get; init; } = [];
    /// <summary>For arrays: element type, index type, number of elements.</summary>
    public (uint Elem, uint Index, uint Count) Array { get; init; }
    /// <summary>For ints: the encoding word (bits, offset, signedness); for vars: linkage.</summary>
    public uint Extra { get; init; }
}

/// <summary>
/// A parsed BTF blob (Documentation/bpf/btf.rst, include/uapi/linux/btf.h): header, type
/// section and string section. Types are numbered from 1; id 0 is void.
/// </summary>
internal sealed class BtfSpec
{
    public const ushort Magic = 0xEB9F;
    private readonly Dictionary<string, List<uint>> _byName = new(StringComparer.Ordinal);

    private BtfSpec(byte[] raw, int typeStart, int typeLen, int strStart, int strLen, List<BtfType> types)
    {
        Raw = raw;
        TypeStart = typeStart;
        TypeLength = typeLen;
        StringStart = strStart;
        StringLength = strLen;
        Types = types;
        foreach (var t in types)
        {
            if (t.Name.Length == 0)
                continue;
            if (!_byName.TryGetValue(t.Name, out var l))
                _byName[t.Name] = l = [];
            l.Add(t.Id);
        }
    }

    /// <summary>The whole blob (patched in place for datasec fixups before loading).</summary>
    public byte[] Raw { get; }

    public int TypeStart { get; }

    public int TypeLength { get; }

    public int StringStart { get; }

    public int StringLength { get; }

    /// <summary>Types by id; index 0 is a placeholder for void.</summary>
    public IReadOnlyList<BtfType> Types { get; }

    public BtfType this[uint id] => id < Types.Count ? Types[(int)id] : throw new BpfObjectException($"BTF type id {id} out of range");

    public IReadOnlyList<uint> ByName(string name) => _byName.TryGetValue(name, out var l) ? l : [];

    public string String(uint offset) => ElfStr(Raw.AsSpan(StringStart, StringLength), offset);

    internal static string ElfStr(ReadOnlySpan<byte> table, uint offset)
    {
        if (offset >= table.Length)
            throw new BpfObjectException($"BTF string offset {offset} outside the string section");
        var s = table[(int)offset..];
        int n = s.IndexOf((byte)0);
        return Encoding.UTF8.GetString(n < 0 ? s : s[..n]);
    }

    /// <summary>Follows typedefs and modifiers (const, volatile, restrict, type tags).</summary>
    public BtfType SkipModsAndTypedefs(uint id)
    {
        var t = this[id];
        for (int depth = 0; t.Kind is BtfKind.Typedef or BtfKind.Volatile or BtfKind.Const or BtfKind.Restrict or BtfKind.TypeTag; depth++)
        {
            if (depth > 32)
                throw new BpfObjectException($"BTF type {id}: modifier chain too deep (a cycle?)");
            t = this[t.SizeOrType];
        }
        return t;
    }

    /// <summary>The size in bytes of a type (btf__resolve_size).</summary>
    public uint SizeOf(uint id) => SizeOf(id, 0);

    private uint SizeOf(uint id, int nesting)
    {
        if (nesting > 32)
            throw new BpfObjectException($"BTF type {id}: array nesting too deep (a cycle?)");
        for (int depth = 0; depth < 32; depth++)
        {
            var t = this[id];
            switch (t.Kind)
            {
                case BtfKind.Int or BtfKind.Struct or BtfKind.Union or BtfKind.Enum or BtfKind.Enum64 or BtfKind.DataSec or BtfKind.Float:
                    return t.SizeOrType;
                case BtfKind.Ptr:
                    return 8;
                case BtfKind.Array:
                    ulong total = (ulong)t.Array.Count * SizeOf(t.Array.Elem, nesting + 1);
                    return total <= uint.MaxValue ? (uint)total : throw new BpfObjectException($"BTF array type {id} is larger than 4 GiB");
                case BtfKind.Typedef or BtfKind.Volatile or BtfKind.Const or BtfKind.Restrict or BtfKind.TypeTag or BtfKind.Var:
                    id = t.SizeOrType;
                    continue;
                default:
                    throw new BpfObjectException($"BTF type {id} ({t.Kind}) has no size");
            }
        }
        throw new BpfObjectException($"BTF type {id}: modifier chain too deep");
    }

    public static BtfSpec Parse(byte[] raw)
    {
        try
        {
            return ParseCore(raw);
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or OverflowException)
        {
            throw new BpfObjectException("malformed BTF: " + e.Message, e);
        }
    }

    private static BtfSpec ParseCore(byte[] raw)
    {
        var d = raw.AsSpan();
        // struct btf_header: magic u16, version u8, flags u8, hdr_len, type_off, type_len, str_off, str_len.
        if (d.Length < 24 || BinaryPrimitives.ReadUInt16LittleEndian(d) != Magic)
            throw new BpfObjectException("BTF: bad magic (expected 0xeB9F little endian)");
        if (d[2] != 1)
            throw new BpfObjectException($"BTF: version {d[2]} is not 1");
        int hdrLen = (int)BinaryPrimitives.ReadUInt32LittleEndian(d[4..]);
        int typeOff = hdrLen + (int)BinaryPrimitives.ReadUInt32LittleEndian(d[8..]);
        int typeLen = (int)BinaryPrimitives.ReadUInt32LittleEndian(d[12..]);
        int strOff = hdrLen + (int)BinaryPrimitives.ReadUInt32LittleEndian(d[16..]);
        int strLen = (int)BinaryPrimitives.ReadUInt32LittleEndian(d[20..]);
        if (typeOff + typeLen > d.Length || strOff + strLen > d.Length || typeLen < 0 || strLen < 0)
            throw new BpfObjectException("BTF: type or string section outside the blob");
        var strs = d.Slice(strOff, strLen);
        var types = new List<BtfType>
        {
            new() { Id = 0, Kind = BtfKind.Unknown, Name = "void", Vlen = 0, KindFlag = false, SizeOrType = 0, RawOffset = -1 },
        };
        var ts = d.Slice(typeOff, typeLen);
        int o = 0;
        while (o < ts.Length)
        {
            if (o + 12 > ts.Length)
                throw new BpfObjectException("BTF: truncated type record");
            uint nameOff = BinaryPrimitives.ReadUInt32LittleEndian(ts[o..]);
            uint info = BinaryPrimitives.ReadUInt32LittleEndian(ts[(o + 4)..]);
            uint st = BinaryPrimitives.ReadUInt32LittleEndian(ts[(o + 8)..]);
            var kind = (BtfKind)((info >> 24) & 0x1f);
            uint vlen = info & 0xffff;
            int start = o;
            o += 12;
            uint extra = 0;
            (uint, uint, uint) arr = default;
            BtfMember[] members = [];
            int need = kind switch
            {
                BtfKind.Int or BtfKind.Var or BtfKind.DeclTag => 4,
                BtfKind.Array => 12,
                BtfKind.Struct or BtfKind.Union or BtfKind.DataSec or BtfKind.Enum64 => 12 * (int)vlen,
                BtfKind.Enum or BtfKind.FuncProto => 8 * (int)vlen,
                BtfKind.Ptr or BtfKind.Fwd or BtfKind.Typedef or BtfKind.Volatile or BtfKind.Const or BtfKind.Restrict
                    or BtfKind.Func or BtfKind.Float or BtfKind.TypeTag => 0,
                _ => throw new BpfObjectException($"BTF: unknown kind {(int)kind} at type {types.Count}"),
            };
            if (o + need > ts.Length)
                throw new BpfObjectException($"BTF: truncated {kind} record");
            var body = ts.Slice(o, need);
            switch (kind)
            {
                case BtfKind.Int or BtfKind.Var or BtfKind.DeclTag:
                    extra = BinaryPrimitives.ReadUInt32LittleEndian(body);
                    break;
                case BtfKind.Array:
                    arr = (BinaryPrimitives.ReadUInt32LittleEndian(body), BinaryPrimitives.ReadUInt32LittleEndian(body[4..]), BinaryPrimitives.ReadUInt32LittleEndian(body[8..]));
                    break;
                case BtfKind.Struct or BtfKind.Union or BtfKind.DataSec or BtfKind.Enum64:
                    members = new BtfMember[vlen];
                    for (int i = 0; i < vlen; i++)
                    {
                        var m = body.Slice(i * 12, 12);
                        uint a = BinaryPrimitives.ReadUInt32LittleEndian(m), b = BinaryPrimitives.ReadUInt32LittleEndian(m[4..]), c = BinaryPrimitives.ReadUInt32LittleEndian(m[8..]);
                        members[i] = kind switch
                        {
                            BtfKind.DataSec => new BtfMember("", a, b, c),          // type, offset, size
                            BtfKind.Enum64 => new BtfMember(ElfStr(strs, a), 0, 0, (long)(((ulong)c << 32) | b)),
                            _ => new BtfMember(ElfStr(strs, a), b, c, 0),             // name, type, offset (bits)
                        };
                    }
                    break;
                case BtfKind.Enum or BtfKind.FuncProto:
                    members = new BtfMember[vlen];
                    for (int i = 0; i < vlen; i++)
                    {
                        var m = body.Slice(i * 8, 8);
                        uint a = BinaryPrimitives.ReadUInt32LittleEndian(m), b = BinaryPrimitives.ReadUInt32LittleEndian(m[4..]);
                        members[i] = kind == BtfKind.Enum ? new BtfMember(ElfStr(strs, a), 0, 0, (int)b) : new BtfMember(ElfStr(strs, a), b, 0, 0);
                    }
                    break;
            }
            o += need;
            types.Add(new BtfType
            {
                Id = (uint)types.Count, Kind = kind, Name = ElfStr(strs, nameOff), Vlen = vlen, KindFlag = (info >> 31) != 0,
                SizeOrType = st, RawOffset = start, Members = members, Array = arr, Extra = extra,
            });
        }
        return new BtfSpec(raw, typeOff, typeLen, strOff, strLen, types);
    }

    /// <summary>Sets the size of a DATASEC and the offset of one of its vars in <see cref="Raw"/>.</summary>
    public void PatchDataSec(BtfType sec, uint size, Func<string, uint?> varOffset)
    {
        var ts = Raw.AsSpan(TypeStart + sec.RawOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(ts[8..], size);
        for (int i = 0; i < sec.Members.Length; i++)
        {
            var v = this[sec.Members[i].Type];
            if (varOffset(v.Name) is uint off)
                BinaryPrimitives.WriteUInt32LittleEndian(ts[(12 + i * 12 + 4)..], off);
        }
    }

    private static BtfSpec? s_vmlinux;

    /// <summary>The running kernel's BTF (/sys/kernel/btf/vmlinux), parsed once per process.</summary>
    public static BtfSpec Vmlinux()
    {
        var v = s_vmlinux;
        if (v is not null)
            return v;
        const string path = "/sys/kernel/btf/vmlinux";
        if (!File.Exists(path))
            throw new BpfNotSupportedException("kernel BTF", $"CO-RE relocations need kernel BTF at {path} (CONFIG_DEBUG_INFO_BTF=y)");
        v = Parse(File.ReadAllBytes(path));
        Interlocked.CompareExchange(ref s_vmlinux, v, null);
        return s_vmlinux!;
    }
}

/// <summary>A func_info, line_info or CO-RE record from .BTF.ext, with the section it belongs to.</summary>
internal readonly record struct BtfExtRecord(uint InsnOff, uint A, uint B, uint C);

/// <summary>
/// .BTF.ext (tools/lib/bpf/libbpf_internal.h struct btf_ext_header): per-section func_info,
/// line_info and CO-RE relocation records. insn_off values are byte offsets in the ELF section.
/// </summary>
internal sealed class BtfExt
{
    public Dictionary<string, List<BtfExtRecord>> FuncInfo { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, List<BtfExtRecord>> LineInfo { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, List<BtfExtRecord>> CoreRelos { get; } = new(StringComparer.Ordinal);

    public static BtfExt Parse(ReadOnlySpan<byte> d, BtfSpec btf)
    {
        try
        {
            return ParseCore(d, btf);
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or OverflowException)
        {
            throw new BpfObjectException("malformed .BTF.ext: " + e.Message, e);
        }
    }

    private static BtfExt ParseCore(ReadOnlySpan<byte> d, BtfSpec btf)
    {
        if (d.Length < 24 || BinaryPrimitives.ReadUInt16LittleEndian(d) != BtfSpec.Magic)
            throw new BpfObjectException(".BTF.ext: bad magic");
        int hdrLen = (int)BinaryPrimitives.ReadUInt32LittleEndian(d[4..]);
        var ext = new BtfExt();
        Section(d, hdrLen, BinaryPrimitives.ReadUInt32LittleEndian(d[8..]), BinaryPrimitives.ReadUInt32LittleEndian(d[12..]), 8, ext.FuncInfo, btf);
        Section(d, hdrLen, BinaryPrimitives.ReadUInt32LittleEndian(d[16..]), BinaryPrimitives.ReadUInt32LittleEndian(d[20..]), 16, ext.LineInfo, btf);
        if (hdrLen >= 32)
            Section(d, hdrLen, BinaryPrimitives.ReadUInt32LittleEndian(d[24..]), BinaryPrimitives.ReadUInt32LittleEndian(d[28..]), 16, ext.CoreRelos, btf);
        return ext;
    }

    private static void Section(ReadOnlySpan<byte> d, int hdrLen, uint off, uint len, int minRec, Dictionary<string, List<BtfExtRecord>> into, BtfSpec btf)
    {
        if (len == 0)
            return;
        if (hdrLen + off + len > d.Length)
            throw new BpfObjectException(".BTF.ext: info section outside the blob");
        var s = d.Slice(hdrLen + (int)off, (int)len);
        int rec = (int)BinaryPrimitives.ReadUInt32LittleEndian(s);
        if (rec < minRec)
            throw new BpfObjectException($".BTF.ext: record size {rec} smaller than {minRec}");
        int o = 4;
        while (o + 8 <= s.Length)
        {
            string sec = btf.String(BinaryPrimitives.ReadUInt32LittleEndian(s[o..]));
            int n = (int)BinaryPrimitives.ReadUInt32LittleEndian(s[(o + 4)..]);
            o += 8;
            if (o + n * rec > s.Length)
                throw new BpfObjectException($".BTF.ext: records of {sec} run past the section");
            var list = new List<BtfExtRecord>(n);
            for (int i = 0; i < n; i++, o += rec)
            {
                var r = s.Slice(o, rec);
                list.Add(new BtfExtRecord(BinaryPrimitives.ReadUInt32LittleEndian(r), BinaryPrimitives.ReadUInt32LittleEndian(r[4..]),
                    rec >= 12 ? BinaryPrimitives.ReadUInt32LittleEndian(r[8..]) : 0, rec >= 16 ? BinaryPrimitives.ReadUInt32LittleEndian(r[12..]) : 0));
            }
            into[sec] = list;
        }
    }
}
