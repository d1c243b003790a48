using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.Interop;
using Netcore.Xdp.Btf;
using Netcore.Xdp.Elf;
using Netcore.Xdp.Syscall;

namespace Netcore.Xdp;

/// <summary>Options for <see cref="BpfObject.Load(string, BpfObjectOptions?)"/>.</summary>
public sealed record BpfObjectOptions
{
    /// <summary>Directory for maps declared with <c>__uint(pinning, LIBBPF_PIN_BY_NAME)</c>; default /sys/fs/bpf.
    /// An existing pin of the same name and shape is reused, so map contents survive a restart.</summary>
    public string PinDirectory { get; init; } = "/sys/fs/bpf";
    /// <summary>Maps to use instead of creating the object's map of that name (shared maps between objects).</summary>
    public IReadOnlyDictionary<string, BpfMap>? ReplaceMaps { get; init; }
    /// <summary>Values for <c>const volatile</c> globals in .rodata, by variable name, written before the programs load.</summary>
    public IReadOnlyDictionary<string, byte[]>? Constants { get; init; }
    /// <summary>Load the object's BTF into the kernel (needed for func/line info and BTF map types). Default true.</summary>
    public bool LoadBtf { get; init; } = true;
    /// <summary>Kernel BTF for CO-RE (default /sys/kernel/btf/vmlinux).</summary>
    public string? KernelBtfPath { get; init; }
    /// <summary>Initial verifier log size when a program fails to load.</summary>
    public int LogSize { get; init; } = 64 * 1024;
    /// <summary>Logger for load events.</summary>
    public ILogger? Logger { get; init; }
}

/// <summary>
/// An ELF object built by clang (<c>-target bpf -g -O2</c>) loaded into the kernel: its BTF,
/// maps (BTF <c>.maps</c>, legacy <c>maps</c>, and <c>.data</c>/<c>.rodata</c>/<c>.bss</c> as
/// array maps) and programs (one per global function in each program section), with map
/// references, global data, bpf-to-bpf calls and CO-RE relocations resolved. Disposing closes
/// every fd: programs stay only where a pin or link holds them.
/// </summary>
public sealed partial class BpfObject : IDisposable
{
    private readonly Dictionary<string, BpfProgram> _programs = new(StringComparer.Ordinal);
    private readonly Dictionary<string, BpfMap> _maps = new(StringComparer.Ordinal);
    private readonly HashSet<BpfMap> _borrowed = [];
    private SafeFd? _btf;
    private readonly Dictionary<string, (string Section, int Offset, int Size)> _globals = new(StringComparer.Ordinal);
    private readonly Dictionary<string, MappedArray<byte>> _mapped = new(StringComparer.Ordinal);

    private BpfObject(string name) => Name = name;

    /// <summary>Object name (file name without extension).</summary>
    public string Name { get; }

    /// <summary>The license string of the object's <c>license</c> section.</summary>
    public string License { get; private set; } = "";

    /// <summary>Programs by function name.</summary>
    public IReadOnlyDictionary<string, BpfProgram> Programs => _programs;

    /// <summary>Maps by name (global data maps as ".data", ".rodata", ".bss").</summary>
    public IReadOnlyDictionary<string, BpfMap> Maps => _maps;

    /// <summary>The kernel id of the object's BTF, or 0.</summary>
    public uint BtfId { get; private set; }

    /// <summary>The program named <paramref name="name"/>.</summary>
    public BpfProgram Program(string name) => _programs.TryGetValue(name, out var p) ? p
        : throw new KeyNotFoundException($"object '{Name}' has no program '{name}' (it has: {string.Join(", ", _programs.Keys)})");

    /// <summary>The map named <paramref name="name"/>.</summary>
    public BpfMap Map(string name) => _maps.TryGetValue(name, out var m) ? m
        : throw new KeyNotFoundException($"object '{Name}' has no map '{name}' (it has: {string.Join(", ", _maps.Keys)})");

    /// <summary>Loads an object file.</summary>
    /// <exception cref="BpfObjectException">The file is not a BPF ELF object, or uses something unsupported.</exception>
    /// <exception cref="BpfVerifierException">A program was rejected.</exception>
    public static BpfObject Load(string path, BpfObjectOptions? options = null) =>
        Load(File.ReadAllBytes(path), Path.GetFileNameWithoutExtension(path), options);

    /// <summary>Loads an object from bytes.</summary>
    public static BpfObject Load(byte[] elf, string name, BpfObjectOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(elf);
        options ??= new BpfObjectOptions();
        var obj = new BpfObject(name);
        try
        {
            new ObjectLoader(obj, ElfFile.Parse(elf), options).Run();
            return obj;
        }
        catch
        {
            obj.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A global variable of the object (in .data, .bss or .rodata), read and written through a
    /// memory mapping of its section's map, so programs see a write at once and nothing else in
    /// the section is touched.
    /// </summary>
    public BpfGlobal Global(string name)
    {
        if (!_globals.TryGetValue(name, out var g))
            throw new KeyNotFoundException($"object '{Name}' has no global variable '{name}'");
        if (!_mapped.TryGetValue(g.Section, out var mem))
            _mapped[g.Section] = mem = Map(g.Section).MapArray<byte>();
        return new BpfGlobal(name, mem, g.Offset, g.Size);
    }

    /// <summary>Closes every program, map and BTF fd the object holds (maps passed in ReplaceMaps stay open).</summary>
    public void Dispose()
    {
        foreach (var m in _mapped.Values)
            m.Dispose();
        _mapped.Clear();
        foreach (var p in _programs.Values)
            p.Dispose();
        foreach (var m in _maps.Values)
            if (!_borrowed.Contains(m))
                m.Dispose();
        _btf?.Dispose();
        _programs.Clear();
        _maps.Clear();
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Debug, Message = "BPF object {Object}: loaded program {Program} ({Type}, {Count} instructions)")]
    private static partial void LogProgramLoaded(ILogger logger, string @object, string program, BpfProgramType type, int count);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "BPF object {Object}: the kernel rejected its BTF ({Error}); loading without BTF")]
    private static partial void LogBtfRejected(ILogger logger, string @object, string error);

    [LoggerMessage(EventId = 3, Level = LogLevel.Information, Message = "BPF object {Object}: reusing pinned map {Map} at {Path}")]
    private static partial void LogPinReused(ILogger logger, string @object, string map, string path);

    /// <summary>Program section prefixes (libbpf section_defs): type, expected attach type, load flags.</summary>
    private static readonly (string Prefix, BpfProgramType Type, BpfAttachType? Attach, uint Flags)[] SectionTypes =
    [
        ("xdp.frags", BpfProgramType.Xdp, BpfAttachType.Xdp, 1u << 5),
        ("xdp/devmap", BpfProgramType.Xdp, BpfAttachType.XdpDevMap, 0),
        ("xdp/cpumap", BpfProgramType.Xdp, BpfAttachType.XdpCpuMap, 0),
        ("xdp", BpfProgramType.Xdp, BpfAttachType.Xdp, 0),
        ("tcx/", BpfProgramType.SchedCls, null, 0),
        ("tc", BpfProgramType.SchedCls, null, 0),
        ("classifier", BpfProgramType.SchedCls, null, 0),
        ("action", BpfProgramType.SchedAct, null, 0),
        ("socket", BpfProgramType.SocketFilter, null, 0),
        ("sk_lookup", BpfProgramType.SkLookup, BpfAttachType.SkLookup, 0),
        ("sk_reuseport", BpfProgramType.SkReuseport, null, 0),
        ("sk_skb", BpfProgramType.SkSkb, null, 0),
        ("sk_msg", BpfProgramType.SkMsg, null, 0),
        ("sockops", BpfProgramType.SockOps, null, 0),
        ("flow_dissector", BpfProgramType.FlowDissector, null, 0),
        ("cgroup_skb/", BpfProgramType.CgroupSkb, null, 0),
        ("kprobe/", BpfProgramType.Kprobe, null, 0),
        ("tracepoint/", BpfProgramType.Tracepoint, null, 0),
        ("raw_tp/", BpfProgramType.RawTracepoint, null, 0),
        ("syscall", BpfProgramType.Syscall, null, 0),
    ];

    internal static (BpfProgramType Type, BpfAttachType? Attach, uint Flags)? SectionType(string section)
    {
        foreach (var s in SectionTypes)
            if (section == s.Prefix || section.StartsWith(s.Prefix, StringComparison.Ordinal) && (s.Prefix.EndsWith('/') || section[s.Prefix.Length] == '/'))
                return (s.Type, s.Attach, s.Flags);
        return null;
    }

    /// <summary>Does the work of <see cref="Load(byte[], string, BpfObjectOptions?)"/>.</summary>
    private sealed class ObjectLoader(BpfObject obj, ElfFile elf, BpfObjectOptions options)
    {
        private readonly ILogger _log = options.Logger ?? NullLogger.Instance;
        private BtfSpec? _btfSpec;
        private BtfExt? _ext;
        private readonly Dictionary<int, BpfMap> _dataMaps = [];                 // ELF section index -> global data map
        private readonly Dictionary<(int Section, ulong Offset), BpfMap> _legacyMaps = [];
        private readonly Dictionary<string, BpfMap> _btfMapsBySymbol = new(StringComparer.Ordinal);
        private readonly Dictionary<int, List<(int Start, int Length, string Name)>> _units = [];
        private readonly Dictionary<int, BpfInstruction[]> _code = [];
        private readonly Dictionary<int, Dictionary<int, ElfRel>> _relocs = [];

        public void Run()
        {
            obj.License = elf.Find("license") is { } lic ? ElfFile.CString(elf.Data(lic).Span, 0) : "";
            LoadBtf();
            CreateBtfMaps();
            CreateLegacyMaps();
            CreateDataMaps();
            IndexCode();
            LoadPrograms();
            InitMapSlots();
        }

        /// <summary>
        /// Initial values of prog arrays and map-in-map declared in .maps
        /// (<c>.values = { [1] = &amp;prog }</c>): relocations in .rel.maps point each slot at a
        /// program or a map, stored once both exist.
        /// </summary>
        private void InitMapSlots()
        {
            if (elf.Find(".maps") is not { } sec)
                return;
            foreach (var rel in elf.RelocationsFor(sec))
            {
                var owner = elf.Symbols.FirstOrDefault(s => s.Section == sec.Index && s.Type == ElfSymbol.STT_OBJECT && rel.Offset >= s.Value && rel.Offset < s.Value + s.Size)
                    ?? throw new BpfObjectException($".maps relocation at {rel.Offset} is inside no map definition");
                if (!_defs.TryGetValue(owner.Name, out var def) || def.ValuesOffset < 0 || obj._borrowed.Contains(obj._maps[owner.Name]))
                    throw new BpfObjectException($"map '{owner.Name}': initial values need an __array(values, ...) member");
                long slot = ((long)(rel.Offset - owner.Value) - def.ValuesOffset) / 8;
                if (slot < 0 || slot >= def.MaxEntries)
                    throw new BpfObjectException($"map '{owner.Name}': initial value slot {slot} outside max_entries {def.MaxEntries}");
                var target = elf.Symbols[rel.Symbol];
                int fd = target.Type == ElfSymbol.STT_FUNC && obj._programs.TryGetValue(target.Name, out var p) ? p.Fd
                    : _btfMapsBySymbol.TryGetValue(target.Name, out var m) ? m.Fd
                    : throw new BpfObjectException($"map '{owner.Name}' slot {slot}: '{target.Name}' is neither a loaded program nor a map of this object");
                obj._maps[owner.Name].UpdateFd((uint)slot, fd);
            }
        }

        // ---- BTF ---------------------------------------------------------------------------

        private void LoadBtf()
        {
            if (elf.Find(".BTF") is not { } btfSec)
                return;
            _btfSpec = BtfSpec.Parse(elf.Data(btfSec).ToArray());
            if (elf.Find(".BTF.ext") is { } extSec)
                _ext = BtfExt.Parse(elf.Data(extSec).Span, _btfSpec);
            // clang leaves DATASEC sizes and var offsets for the loader to fill in from the ELF
            // section and symbol tables (libbpf btf_fixup_datasec).
            foreach (var t in _btfSpec.Types)
            {
                if (t.Kind != BtfKind.DataSec || elf.Find(t.Name) is not { } sec)
                    continue;
                _btfSpec.PatchDataSec(t, (uint)sec.Size, var => elf.Symbols.FirstOrDefault(s => s.Section == sec.Index && s.Name == var && s.Type == ElfSymbol.STT_OBJECT) is { } sym ? (uint)sym.Value : null);
            }
            if (!options.LoadBtf)
                return;
            unsafe
            {
                byte[] raw = _btfSpec.Raw;
                byte[] log = new byte[64 * 1024];
                fixed (byte* p = raw)
                fixed (byte* l = log)
                {
                    var attr = new bpf_attr_btf_load { btf = (ulong)p, btf_size = (uint)raw.Length };
                    int fd = Bpf.Call(BpfCmd.BtfLoad, ref attr, out Errno e);
                    if (fd < 0 && e != Errno.EPERM)
                    {
                        attr.btf_log_buf = (ulong)l;
                        attr.btf_log_size = (uint)log.Length;
                        attr.btf_log_level = 1;
                        fd = Bpf.Call(BpfCmd.BtfLoad, ref attr, out e);
                    }
                    if (fd < 0)
                    {
                        if (e == Errno.EPERM)
                            throw BpfException.For(BpfCmd.BtfLoad, $"load BTF of '{obj.Name}'", e);
                        int n = Array.IndexOf(log, (byte)0);
                        LogBtfRejected(_log, obj.Name, $"{e.Name()}: {System.Text.Encoding.UTF8.GetString(log, 0, n < 0 ? 0 : n).Trim()}");
                        return;
                    }
                    obj._btf = new SafeFd(fd);
                }
            }
            var info = default(BtfInfo);
            Bpf.GetInfo(obj._btf, ref info, "BTF info");
            obj.BtfId = info.id;
        }

        [StructLayout(LayoutKind.Sequential)]
        private struct BtfInfo
        {
            public ulong btf;
            public uint btf_size, id;
            public ulong name;
            public uint name_len, kernel_btf;
        }

        // ---- maps --------------------------------------------------------------------------

        private sealed record MapDef(string Name, BpfMapType Type, uint KeySize, uint ValueSize, uint MaxEntries, uint Flags,
            uint KeyTypeId, uint ValueTypeId, bool PinByName, ulong MapExtra, MapDef? Inner)
        {
            /// <summary>Byte offset of the <c>values</c> array inside the definition (for initial slots), or -1.</summary>
            public int ValuesOffset { get; init; } = -1;
        }

        private readonly Dictionary<string, MapDef> _defs = new(StringComparer.Ordinal);

        private void CreateBtfMaps()
        {
            if (elf.Find(".maps") is not { } sec)
                return;
            if (_btfSpec is null)
                throw new BpfObjectException($"'{obj.Name}' has a .maps section but no .BTF: build with -g");
            var ds = _btfSpec.Types.FirstOrDefault(t => t.Kind == BtfKind.DataSec && t.Name == ".maps")
                ?? throw new BpfObjectException($"'{obj.Name}': no DATASEC .maps in BTF");
            foreach (var v in ds.Members)
            {
                var var = _btfSpec[v.Type];
                var def = ParseBtfMapDef(var.Name, var.SizeOrType, 0);
                _defs[var.Name] = def;
                var map = CreateMap(def);
                _btfMapsBySymbol[var.Name] = map;
            }
        }

        private MapDef ParseBtfMapDef(string name, uint typeId, int depth)
        {
            var btf = _btfSpec!;
            var st = btf.SkipModsAndTypedefs(typeId);
            if (st.Kind != BtfKind.Struct)
                throw new BpfObjectException($"map '{name}': its definition is a {st.Kind}, not a struct");
            BpfMapType type = 0;
            uint keySize = 0, valueSize = 0, max = 0, flags = 0, keyId = 0, valueId = 0;
            ulong extra = 0;
            bool pin = false;
            int valuesOffset = -1;
            MapDef? inner = null;
            foreach (var m in st.Members)
            {
                switch (m.Name)
                {
                    case "type": type = (BpfMapType)UIntFromPtr(name, m); break;
                    case "max_entries": max = UIntFromPtr(name, m); break;
                    case "map_flags": flags = UIntFromPtr(name, m); break;
                    case "key_size": keySize = UIntFromPtr(name, m); break;
                    case "value_size": valueSize = UIntFromPtr(name, m); break;
                    case "map_extra": extra = UIntFromPtr(name, m); break;
                    case "numa_node": break;
                    case "pinning":
                        uint p = UIntFromPtr(name, m);
                        if (p > 1)
                            throw new BpfObjectException($"map '{name}': pinning {p} is not supported (0 none, 1 LIBBPF_PIN_BY_NAME)");
                        pin = p == 1;
                        break;
                    case "key":
                        keyId = PtrTarget(name, m);
                        keySize = btf.SizeOf(keyId);
                        break;
                    case "value":
                        valueId = PtrTarget(name, m);
                        valueSize = btf.SizeOf(valueId);
                        break;
                    case "values":
                        // __array(values, struct inner_def): an array of pointers to the inner map's definition.
                        var arr = btf.SkipModsAndTypedefs(m.Type);
                        if (arr.Kind != BtfKind.Array || depth > 0)
                            throw new BpfObjectException($"map '{name}': 'values' must be __array(values, struct {{...}}) one level deep");
                        var ptr = btf.SkipModsAndTypedefs(arr.Array.Elem);
                        if (ptr.Kind != BtfKind.Ptr)
                            throw new BpfObjectException($"map '{name}': 'values' elements must be pointers");
                        // Prog arrays declare __array(values, int (void *)): pointers to functions, no inner map.
                        if (btf.SkipModsAndTypedefs(ptr.SizeOrType).Kind != BtfKind.FuncProto)
                            inner = ParseBtfMapDef(name + ".inner", ptr.SizeOrType, depth + 1);
                        valueSize = 4;
                        valuesOffset = (int)(m.Offset / 8);
                        break;
                    default:
                        throw new BpfObjectException($"map '{name}': unknown BTF map attribute '{m.Name}'");
                }
            }
            if (type == BpfMapType.RingBuf || type == BpfMapType.ProgArray || type is BpfMapType.ArrayOfMaps or BpfMapType.HashOfMaps
                || type is BpfMapType.DevMap or BpfMapType.DevMapHash or BpfMapType.CpuMap or BpfMapType.XskMap or BpfMapType.SockMap or BpfMapType.SockHash
                || type is BpfMapType.PerfEventArray)
                keyId = valueId = 0; // the kernel rejects BTF key/value types for these (map_check_btf)
            return new MapDef(name, type, keySize, valueSize, max, flags, keyId, valueId, pin, extra, inner) { ValuesOffset = valuesOffset };
        }

        private uint UIntFromPtr(string map, BtfMember m)
        {
            // __uint(name, val) is `int (*name)[val]`: a pointer to an array whose element count is the value.
            var btf = _btfSpec!;
            var ptr = btf.SkipModsAndTypedefs(m.Type);
            if (ptr.Kind != BtfKind.Ptr)
                throw new BpfObjectException($"map '{map}': attribute '{m.Name}' is not __uint(...)");
            var arr = btf.SkipModsAndTypedefs(ptr.SizeOrType);
            if (arr.Kind != BtfKind.Array)
                throw new BpfObjectException($"map '{map}': attribute '{m.Name}' is not __uint(...)");
            return arr.Array.Count;
        }

        private uint PtrTarget(string map, BtfMember m)
        {
            var ptr = _btfSpec!.SkipModsAndTypedefs(m.Type);
            if (ptr.Kind != BtfKind.Ptr)
                throw new BpfObjectException($"map '{map}': attribute '{m.Name}' must be __type(...)");
            return ptr.SizeOrType;
        }

        private BpfMap CreateMap(MapDef def)
        {
            if (options.ReplaceMaps is { } rep && rep.TryGetValue(def.Name, out var given))
            {
                obj._maps[def.Name] = given;
                obj._borrowed.Add(given);
                return given;
            }
            string? pinPath = def.PinByName ? Path.Combine(options.PinDirectory, def.Name) : null;
            if (pinPath is not null && File.Exists(pinPath))
            {
                var pinned = BpfMap.FromPin(pinPath);
                if (pinned.Type != def.Type || pinned.KeySize != def.KeySize || pinned.ValueSize != def.ValueSize || pinned.MaxEntries != def.MaxEntries)
                {
                    pinned.Dispose();
                    throw new BpfObjectException($"map '{def.Name}': the map pinned at {pinPath} has a different shape; remove the pin to recreate it");
                }
                LogPinReused(_log, obj.Name, def.Name, pinPath);
                obj._maps[def.Name] = pinned;
                return pinned;
            }
            BpfMap? template = def.Inner is { } inner ? BpfMap.Create(Spec(inner)) : null;
            try
            {
                var map = BpfMap.Create(Spec(def) with { InnerMapTemplate = template });
                obj._maps[def.Name] = map;
                if (pinPath is not null)
                    map.Pin(pinPath);
                return map;
            }
            finally
            {
                template?.Dispose();
            }
        }

        private BpfMapSpec Spec(MapDef def) => new()
        {
            Type = def.Type, KeySize = def.KeySize, ValueSize = def.ValueSize, MaxEntries = def.MaxEntries, Flags = (BpfMapFlags)def.Flags,
            Name = def.Name, MapExtra = def.MapExtra,
            Btf = obj._btf is not null && (def.KeyTypeId != 0 || def.ValueTypeId != 0) ? (obj._btf.Fd, def.KeyTypeId, def.ValueTypeId) : null,
        };

        private void CreateLegacyMaps()
        {
            if (elf.Find("maps") is not { } sec)
                return;
            var syms = elf.Symbols.Where(s => s.Section == sec.Index && s.Type != ElfSymbol.STT_SECTION && s.Name.Length > 0).OrderBy(s => s.Value).ToList();
            if (syms.Count == 0)
                return;
            // struct bpf_map_def { type, key_size, value_size, max_entries, map_flags, ... }: 20 bytes or more.
            int size = (int)sec.Size / syms.Count;
            if (size < 20)
                throw new BpfObjectException($"legacy 'maps' section: {size} bytes per map is smaller than struct bpf_map_def");
            var d = elf.Data(sec).Span;
            foreach (var s in syms)
            {
                var r = d.Slice((int)s.Value, 20);
                var def = new MapDef(s.Name, (BpfMapType)BinaryPrimitives.ReadUInt32LittleEndian(r), BinaryPrimitives.ReadUInt32LittleEndian(r[4..]),
                    BinaryPrimitives.ReadUInt32LittleEndian(r[8..]), BinaryPrimitives.ReadUInt32LittleEndian(r[12..]), BinaryPrimitives.ReadUInt32LittleEndian(r[16..]),
                    0, 0, false, 0, null);
                _legacyMaps[(sec.Index, s.Value)] = CreateMap(def);
            }
        }

        private static bool IsDataSection(string n) =>
            n is ".data" or ".bss" or ".rodata" || n.StartsWith(".data.", StringComparison.Ordinal) || n.StartsWith(".rodata.", StringComparison.Ordinal) || n.StartsWith(".bss.", StringComparison.Ordinal);

        private void CreateDataMaps()
        {
            // Global data: one single-element array map per section (libbpf bpf_object__init_global_data_maps).
            string prefix = new string(obj.Name.Where(c => char.IsAsciiLetterOrDigit(c) || c == '_').Take(8).ToArray());
            foreach (var sec in elf.Sections)
            {
                if (!IsDataSection(sec.Name) || sec.Size == 0 || (sec.Type != ElfSection.SHT_PROGBITS && sec.Type != ElfSection.SHT_NOBITS))
                    continue;
                bool ro = sec.Name.StartsWith(".rodata", StringComparison.Ordinal);
                uint valueId = _btfSpec?.Types.FirstOrDefault(t => t.Kind == BtfKind.DataSec && t.Name == sec.Name)?.Id ?? 0;
                var spec = new BpfMapSpec
                {
                    Type = BpfMapType.Array, KeySize = 4, ValueSize = (uint)sec.Size, MaxEntries = 1,
                    Flags = BpfMapFlags.Mmapable | (ro ? BpfMapFlags.ReadOnlyProgram : 0),
                    Name = prefix + (sec.Name.Length > 7 ? sec.Name[..7] : sec.Name),
                    Btf = obj._btf is not null && valueId != 0 ? (obj._btf.Fd, 0u, valueId) : null,
                };
                var map = BpfMap.Create(spec);
                obj._maps[sec.Name] = map;
                foreach (var sym in elf.Symbols)
                    if (sym.Section == sec.Index && sym.Type == ElfSymbol.STT_OBJECT && sym.Name.Length > 0)
                        obj._globals[sym.Name] = (sec.Name, (int)sym.Value, (int)sym.Size);
                _dataMaps[sec.Index] = map;
                byte[] init = elf.Data(sec).ToArray();
                if (ro && options.Constants is { } consts)
                {
                    foreach (var (name, bytes) in consts)
                    {
                        var sym = elf.Symbols.FirstOrDefault(s => s.Section == sec.Index && s.Name == name);
                        if (sym is null)
                            continue;
                        if ((ulong)bytes.Length != sym.Size)
                            throw new ArgumentException($"constant '{name}' is {sym.Size} bytes in the object, {bytes.Length} given");
                        bytes.CopyTo(init.AsSpan((int)sym.Value));
                    }
                }
                map.Update([0, 0, 0, 0], init);
                if (ro)
                    map.Freeze();
            }
        }

        // ---- code --------------------------------------------------------------------------

        private void IndexCode()
        {
            foreach (var sec in elf.Sections)
            {
                if ((sec.Flags & ElfSection.SHF_EXECINSTR) == 0 || sec.Size == 0)
                    continue;
                _code[sec.Index] = MemoryMarshal.Cast<byte, BpfInstruction>(elf.Data(sec).Span).ToArray();
                _units[sec.Index] = elf.Symbols.Where(s => s.Section == sec.Index && s.Type == ElfSymbol.STT_FUNC)
                    .Select(s => ((int)(s.Value / 8), (int)(s.Size / 8), s.Name)).OrderBy(u => u.Item1).ToList();
                var rels = new Dictionary<int, ElfRel>();
                foreach (var r in elf.RelocationsFor(sec))
                    rels[(int)(r.Offset / 8)] = r;
                _relocs[sec.Index] = rels;
            }
        }

        private void LoadPrograms()
        {
            foreach (var sec in elf.Sections)
            {
                if (!_code.ContainsKey(sec.Index) || sec.Name == ".text")
                    continue;
                var st = SectionType(sec.Name) ?? throw new BpfObjectException($"section '{sec.Name}': unknown program type (expected xdp, tc, classifier, socket, sk_lookup, ...)");
                foreach (var unit in _units[sec.Index])
                {
                    var sym = elf.Symbols.First(s => s.Section == sec.Index && s.Name == unit.Name && s.Type == ElfSymbol.STT_FUNC);
                    if (sym.Bind == ElfSymbol.STB_LOCAL)
                        continue; // static functions in a program section are subprograms
                    LoadProgram(sec, unit, st.Type, st.Attach, st.Flags);
                }
            }
        }

        private void LoadProgram(ElfSection sec, (int Start, int Length, string Name) main, BpfProgramType type, BpfAttachType? attach, uint flags)
        {
            var output = new List<BpfInstruction>();
            var placed = new Dictionary<(int Sec, int Start), int>();
            var queue = new Queue<(int Sec, (int Start, int Length, string Name) Unit, int At)>();
            var funcInfo = new List<(int Insn, uint Type)>();
            var lineInfo = new List<(int Insn, BtfExtRecord Rec)>();
            int Place(int secIndex, (int Start, int Length, string Name) u)
            {
                if (placed.TryGetValue((secIndex, u.Start), out int at))
                    return at;
                at = output.Count;
                placed[(secIndex, u.Start)] = at;
                output.AddRange(_code[secIndex].AsSpan(u.Start, u.Length).ToArray());
                queue.Enqueue((secIndex, u, at));
                return at;
            }
            Place(sec.Index, main);
            var insns = new List<BpfInstruction>();
            while (queue.Count > 0)
            {
                var (s, u, at) = queue.Dequeue();
                string secName = elf.Sections[s].Name;
                var rels = _relocs[s];
                for (int j = 0; j < u.Length; j++)
                {
                    int g = u.Start + j;
                    var insn = output[at + j];
                    if (rels.TryGetValue(g, out var rel))
                    {
                        var sym = elf.Symbols[rel.Symbol];
                        var symSec = sym.Section < elf.Sections.Count ? elf.Sections[sym.Section] : null;
                        if (insn.IsLoadImm64)
                        {
                            if (symSec is not null && _dataMaps.TryGetValue(symSec.Index, out var dm))
                            {
                                // BPF_PSEUDO_MAP_VALUE: imm = map fd, next imm = offset inside the value.
                                long off = insn.Immediate + (sym.Type == ElfSymbol.STT_SECTION ? 0 : (long)sym.Value);
                                output[at + j] = insn.WithSrc(2).WithImmediate(dm.Fd);
                                output[at + j + 1] = output[at + j + 1].WithImmediate((int)off);
                            }
                            else if (symSec?.Name == ".maps" && _btfMapsBySymbol.TryGetValue(sym.Name, out var bm))
                                output[at + j] = insn.WithSrc(1).WithImmediate(bm.Fd);       // BPF_PSEUDO_MAP_FD
                            else if (symSec?.Name == "maps" && _legacyMaps.TryGetValue((symSec.Index, sym.Value), out var lm))
                                output[at + j] = insn.WithSrc(1).WithImmediate(lm.Fd);
                            else if (symSec is not null && _code.ContainsKey(symSec.Index))
                            {
                                // A function pointer (callbacks for bpf_loop, ...): BPF_PSEUDO_FUNC with a relative imm.
                                int target = (int)((sym.Value + (ulong)(long)insn.Immediate) / 8);
                                int tAt = PlaceTarget(symSec.Index, target, Place);
                                output[at + j] = insn.WithSrc(4).WithImmediate(tAt - (at + j) - 1);
                            }
                            else
                                throw new BpfObjectException($"program '{main.Name}': relocation against '{sym.Name}' in section {symSec?.Name ?? "(undefined)"} is not supported (externs and kconfig are not)");
                        }
                        else if (insn.IsCall && insn.Src == 1 && symSec is not null && _code.ContainsKey(symSec.Index))
                        {
                            int target = (int)(sym.Value / 8) + insn.Immediate + 1;
                            int tAt = PlaceTarget(symSec.Index, target, Place);
                            output[at + j] = insn.WithImmediate(tAt - (at + j) - 1);
                        }
                        else if (!insn.IsCall)
                            throw new BpfObjectException($"program '{main.Name}': unexpected relocation on instruction {g} of {secName} (opcode 0x{insn.Opcode:x2})");
                    }
                    else if (insn.IsCall && insn.Src == 1)
                    {
                        int target = g + insn.Immediate + 1;
                        if (target < u.Start || target >= u.Start + u.Length)
                        {
                            int tAt = PlaceTarget(s, target, Place);
                            output[at + j] = insn.WithImmediate(tAt - (at + j) - 1);
                        }
                    }
                }
                if (_ext is not null)
                {
                    if (_ext.FuncInfo.TryGetValue(secName, out var fis))
                        foreach (var r in fis)
                            if (r.InsnOff / 8 >= u.Start && r.InsnOff / 8 < u.Start + u.Length)
                                funcInfo.Add(((int)(r.InsnOff / 8) - u.Start + at, r.A));
                    if (_ext.LineInfo.TryGetValue(secName, out var lis))
                        foreach (var r in lis)
                            if (r.InsnOff / 8 >= u.Start && r.InsnOff / 8 < u.Start + u.Length)
                                lineInfo.Add(((int)(r.InsnOff / 8) - u.Start + at, r));
                }
                insns.Clear();
            }
            var code = output.ToArray();
            ApplyCore(code, placed);
            byte[]? fi = null, li = null;
            if (obj._btf is not null && funcInfo.Count > 0)
            {
                funcInfo.Sort((a, b) => a.Insn.CompareTo(b.Insn));
                lineInfo.Sort((a, b) => a.Insn.CompareTo(b.Insn));
                fi = new byte[funcInfo.Count * 8];
                for (int i = 0; i < funcInfo.Count; i++)
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(fi.AsSpan(i * 8), (uint)funcInfo[i].Insn);
                    BinaryPrimitives.WriteUInt32LittleEndian(fi.AsSpan(i * 8 + 4), funcInfo[i].Type);
                }
                li = new byte[lineInfo.Count * 16];
                for (int i = 0; i < lineInfo.Count; i++)
                {
                    var r = lineInfo[i].Rec;
                    BinaryPrimitives.WriteUInt32LittleEndian(li.AsSpan(i * 16), (uint)lineInfo[i].Insn);
                    BinaryPrimitives.WriteUInt32LittleEndian(li.AsSpan(i * 16 + 4), r.A);
                    BinaryPrimitives.WriteUInt32LittleEndian(li.AsSpan(i * 16 + 8), r.B);
                    BinaryPrimitives.WriteUInt32LittleEndian(li.AsSpan(i * 16 + 12), r.C);
                }
            }
            var btf = _btfSpec;
            var lines = lineInfo.ToArray();
            string? SourceLine(int insn)
            {
                if (btf is null || lines.Length == 0)
                    return null;
                int best = -1;
                for (int i = 0; i < lines.Length && lines[i].Insn <= insn; i++)
                    best = i;
                if (best < 0)
                    return null;
                var r = lines[best].Rec;
                // bpf_line_info.line_col: line number in the upper 22 bits, column in the lower 10.
                return $"{Path.GetFileName(btf.String(r.A))}:{r.C >> 10}: {btf.String(r.B).Trim()}";
            }
            var prog = BpfProgram.LoadCore(new ProgramLoadRequest
            {
                Type = type, Name = main.Name, License = obj.License.Length == 0 ? "GPL" : obj.License, ExpectedAttachType = attach, Flags = flags,
                LogSize = options.LogSize, Instructions = code, BtfFd = obj._btf?.Fd ?? -1, FuncInfo = fi, LineInfo = li, SourceLineOf = SourceLine,
            });
            obj._programs[main.Name] = prog;
            LogProgramLoaded(_log, obj.Name, main.Name, type, code.Length);
        }

        private int PlaceTarget(int secIndex, int target, Func<int, (int Start, int Length, string Name), int> place)
        {
            foreach (var u in _units[secIndex])
                if (target >= u.Start && target < u.Start + u.Length)
                    return place(secIndex, u) + (target - u.Start);
            throw new BpfObjectException($"call into {elf.Sections[secIndex].Name} at instruction {target} lands in no function");
        }

        private void ApplyCore(BpfInstruction[] code, Dictionary<(int Sec, int Start), int> placed)
        {
            if (_ext is null || _btfSpec is null || _ext.CoreRelos.Count == 0)
                return;
            BtfSpec? target = null;
            foreach (var ((s, start), at) in placed)
            {
                string secName = elf.Sections[s].Name;
                if (!_ext.CoreRelos.TryGetValue(secName, out var relos))
                    continue;
                var unit = _units[s].First(u => u.Start == start);
                foreach (var r in relos)
                {
                    int idx = (int)(r.InsnOff / 8);
                    if (idx < unit.Start || idx >= unit.Start + unit.Length)
                        continue;
                    target ??= options.KernelBtfPath is { } p ? BtfSpec.Parse(File.ReadAllBytes(p)) : BtfSpec.Vmlinux();
                    string access = _btfSpec.String(r.B);
                    long? value = CoreRelocator.Resolve(_btfSpec, target, r.A, access, r.C);
                    if (value is null)
                        throw new BpfObjectException($"CO-RE: the kernel's BTF has no match for {_btfSpec[r.A].Name} access {access} (relocation kind {r.C}) used by {unit.Name}");
                    CoreRelocator.Patch(code, at + idx - unit.Start, value.Value, r.C);
                }
            }
        }
    }
}
