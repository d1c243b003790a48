namespace Netcore.Xdp;

/// <summary>BPF registers: R0 return value, R1-R5 arguments, R6-R9 callee-saved, R10 read-only frame pointer.</summary>
public enum BpfRegister : byte
{
    /// <summary>Return value.</summary>
    R0,
    /// <summary>Argument 1 (the context on entry).</summary>
    R1,
    /// <summary>Argument 2.</summary>
    R2,
    /// <summary>Argument 3.</summary>
    R3,
    /// <summary>Argument 4.</summary>
    R4,
    /// <summary>Argument 5.</summary>
    R5,
    /// <summary>Callee-saved.</summary>
    R6,
    /// <summary>Callee-saved.</summary>
    R7,
    /// <summary>Callee-saved.</summary>
    R8,
    /// <summary>Callee-saved.</summary>
    R9,
    /// <summary>Frame pointer (read-only).</summary>
    R10,
}

/// <summary>ALU operations (BPF_OP of BPF_ALU/BPF_ALU64, include/uapi/linux/bpf_common.h).</summary>
public enum BpfAluOp : byte
{
    /// <summary>+=</summary>
    Add = 0x00,
    /// <summary>-=</summary>
    Sub = 0x10,
    /// <summary>*=</summary>
    Mul = 0x20,
    /// <summary>/= (unsigned)</summary>
    Div = 0x30,
    /// <summary>|=</summary>
    Or = 0x40,
    /// <summary>&amp;=</summary>
    And = 0x50,
    /// <summary>&lt;&lt;=</summary>
    Lsh = 0x60,
    /// <summary>&gt;&gt;= (logical)</summary>
    Rsh = 0x70,
    /// <summary>= -dst</summary>
    Neg = 0x80,
    /// <summary>%= (unsigned)</summary>
    Mod = 0x90,
    /// <summary>^=</summary>
    Xor = 0xa0,
    /// <summary>= (move)</summary>
    Mov = 0xb0,
    /// <summary>s&gt;&gt;= (arithmetic)</summary>
    Arsh = 0xc0,
}

/// <summary>Conditional jump operations (BPF_OP of BPF_JMP/BPF_JMP32).</summary>
public enum BpfJumpOp : byte
{
    /// <summary>==</summary>
    Eq = 0x10,
    /// <summary>&gt; unsigned</summary>
    Gt = 0x20,
    /// <summary>&gt;= unsigned</summary>
    Ge = 0x30,
    /// <summary>&amp; (any bit set)</summary>
    Set = 0x40,
    /// <summary>!=</summary>
    Ne = 0x50,
    /// <summary>&gt; signed</summary>
    SGt = 0x60,
    /// <summary>&gt;= signed</summary>
    SGe = 0x70,
    /// <summary>&lt; unsigned</summary>
    Lt = 0xa0,
    /// <summary>&lt;= unsigned</summary>
    Le = 0xb0,
    /// <summary>&lt; signed</summary>
    SLt = 0xc0,
    /// <summary>&lt;= signed</summary>
    SLe = 0xd0,
}

/// <summary>Memory access sizes (BPF_SIZE).</summary>
public enum BpfSize : byte
{
    /// <summary>32 bits (BPF_W).</summary>
    Word = 0x00,
    /// <summary>16 bits (BPF_H).</summary>
    Half = 0x08,
    /// <summary>8 bits (BPF_B).</summary>
    Byte = 0x10,
    /// <summary>64 bits (BPF_DW).</summary>
    Double = 0x18,
}

/// <summary>A few common helper ids (enum bpf_func_id / __BPF_FUNC_MAPPER in include/uapi/linux/bpf.h).</summary>
public enum BpfHelper
{
    /// <summary>bpf_map_lookup_elem(map, key) → value pointer or NULL.</summary>
    MapLookupElem = 1,
    /// <summary>bpf_map_update_elem(map, key, value, flags).</summary>
    MapUpdateElem = 2,
    /// <summary>bpf_map_delete_elem(map, key).</summary>
    MapDeleteElem = 3,
    /// <summary>bpf_ktime_get_ns().</summary>
    KtimeGetNs = 5,
    /// <summary>bpf_trace_printk(fmt, size, ...).</summary>
    TracePrintk = 6,
    /// <summary>bpf_get_prandom_u32().</summary>
    GetPrandomU32 = 7,
    /// <summary>bpf_get_smp_processor_id().</summary>
    GetSmpProcessorId = 8,
    /// <summary>bpf_tail_call(ctx, prog_array, index).</summary>
    TailCall = 12,
    /// <summary>bpf_redirect(ifindex, flags).</summary>
    Redirect = 23,
    /// <summary>bpf_xdp_adjust_head(ctx, delta).</summary>
    XdpAdjustHead = 44,
    /// <summary>bpf_redirect_map(map, key, flags).</summary>
    RedirectMap = 51,
    /// <summary>bpf_ringbuf_output(ringbuf, data, size, flags).</summary>
    RingbufOutput = 130,
}

/// <summary>
/// Builds eBPF programs instruction by instruction, with named labels for jumps and named map
/// references that are bound to map fds when the program is assembled, so small programs need
/// no clang. Encodings follow Documentation/bpf/standardization/instruction-set.rst.
/// </summary>
/// <example>
/// <code>
/// var asm = new BpfAssembler()
///     .Mov(BpfRegister.R0, 2)       // XDP_PASS
///     .Exit();
/// using var prog = asm.Load(BpfProgramType.Xdp);
/// </code>
/// </example>
public sealed class BpfAssembler
{
    private readonly List<BpfInstruction> _insns = [];
    private readonly Dictionary<string, int> _labels = new(StringComparer.Ordinal);
    private readonly List<(int At, string Label)> _jumps = [];
    private readonly List<(int At, string Map)> _mapRefs = [];

    private const byte ClassLd = 0x00, ClassLdx = 0x01, ClassSt = 0x02, ClassStx = 0x03, ClassAlu = 0x04, ClassJmp = 0x05, ClassJmp32 = 0x06, ClassAlu64 = 0x07;
    private const byte SrcK = 0x00, SrcX = 0x08, ModeImm = 0x00, ModeMem = 0x60, ModeAtomic = 0xc0;

    /// <summary>Instructions emitted so far.</summary>
    public int Count => _insns.Count;

    /// <summary>Marks the position of the next instruction with <paramref name="name"/>.</summary>
    public BpfAssembler Label(string name)
    {
        if (!_labels.TryAdd(name, _insns.Count))
            throw new ArgumentException($"label '{name}' defined twice", nameof(name));
        return this;
    }

    /// <summary>dst = imm (64-bit, sign-extended).</summary>
    public BpfAssembler Mov(BpfRegister dst, int imm) => Alu(BpfAluOp.Mov, dst, imm);

    /// <summary>dst = src (64-bit).</summary>
    public BpfAssembler Mov(BpfRegister dst, BpfRegister src) => Alu(BpfAluOp.Mov, dst, src);

    /// <summary>64-bit ALU with an immediate: dst op= imm.</summary>
    public BpfAssembler Alu(BpfAluOp op, BpfRegister dst, int imm) => EmitRaw((byte)(ClassAlu64 | SrcK | (byte)op), dst, 0, 0, imm);

    /// <summary>64-bit ALU with a register: dst op= src.</summary>
    public BpfAssembler Alu(BpfAluOp op, BpfRegister dst, BpfRegister src) => Emit((byte)(ClassAlu64 | SrcX | (byte)op), dst, src, 0, 0);

    /// <summary>32-bit ALU with an immediate (upper half of dst zeroed).</summary>
    public BpfAssembler Alu32(BpfAluOp op, BpfRegister dst, int imm) => EmitRaw((byte)(ClassAlu | SrcK | (byte)op), dst, 0, 0, imm);

    /// <summary>32-bit ALU with a register.</summary>
    public BpfAssembler Alu32(BpfAluOp op, BpfRegister dst, BpfRegister src) => Emit((byte)(ClassAlu | SrcX | (byte)op), dst, src, 0, 0);

    /// <summary>dst = imm64 (two instructions).</summary>
    public BpfAssembler LoadImm64(BpfRegister dst, long imm)
    {
        EmitRaw(0x18, dst, 0, 0, (int)imm);
        return EmitRaw(0, BpfRegister.R0, 0, 0, (int)(imm >> 32));
    }

    /// <summary>dst = the map named <paramref name="mapName"/> (BPF_PSEUDO_MAP_FD, bound when assembled).</summary>
    public BpfAssembler LoadMap(BpfRegister dst, string mapName)
    {
        _mapRefs.Add((_insns.Count, mapName));
        EmitRaw(0x18, dst, 1, 0, 0);
        return EmitRaw(0, BpfRegister.R0, 0, 0, 0);
    }

    /// <summary>dst = *(size *)(src + offset).</summary>
    public BpfAssembler Load(BpfSize size, BpfRegister dst, BpfRegister src, short offset) => Emit((byte)(ClassLdx | ModeMem | (byte)size), dst, src, offset, 0);

    /// <summary>*(size *)(dst + offset) = src.</summary>
    public BpfAssembler Store(BpfSize size, BpfRegister dst, short offset, BpfRegister src) => Emit((byte)(ClassStx | ModeMem | (byte)size), dst, src, offset, 0);

    /// <summary>*(size *)(dst + offset) = imm.</summary>
    public BpfAssembler Store(BpfSize size, BpfRegister dst, short offset, int imm) => EmitRaw((byte)(ClassSt | ModeMem | (byte)size), dst, 0, offset, imm);

    /// <summary>lock *(size *)(dst + offset) += src (32 or 64 bit).</summary>
    public BpfAssembler AtomicAdd(BpfSize size, BpfRegister dst, short offset, BpfRegister src)
    {
        if (size is not (BpfSize.Word or BpfSize.Double))
            throw new ArgumentException("atomic operations are 32 or 64 bits", nameof(size));
        return Emit((byte)(ClassStx | ModeAtomic | (byte)size), dst, src, offset, 0);
    }

    /// <summary>goto label.</summary>
    public BpfAssembler Jump(string label) => EmitJump(0x05, BpfRegister.R0, BpfRegister.R0, 0, label);

    /// <summary>if dst op imm goto label (64-bit compare).</summary>
    public BpfAssembler JumpIf(BpfJumpOp op, BpfRegister dst, int imm, string label) => EmitJump((byte)(ClassJmp | SrcK | (byte)op), dst, BpfRegister.R0, imm, label);

    /// <summary>if dst op src goto label (64-bit compare).</summary>
    public BpfAssembler JumpIf(BpfJumpOp op, BpfRegister dst, BpfRegister src, string label) => EmitJump((byte)(ClassJmp | SrcX | (byte)op), dst, src, 0, label);

    /// <summary>if (u32)dst op imm goto label.</summary>
    public BpfAssembler JumpIf32(BpfJumpOp op, BpfRegister dst, int imm, string label) => EmitJump((byte)(ClassJmp32 | SrcK | (byte)op), dst, BpfRegister.R0, imm, label);

    /// <summary>Calls a helper; arguments in R1-R5, result in R0; R1-R5 are clobbered.</summary>
    public BpfAssembler Call(BpfHelper helper) => Call((int)helper);

    /// <summary>Calls a helper by id.</summary>
    public BpfAssembler Call(int helperId) => EmitRaw(0x85, BpfRegister.R0, 0, 0, helperId);

    /// <summary>Returns R0.</summary>
    public BpfAssembler Exit() => EmitRaw(0x95, BpfRegister.R0, 0, 0, 0);

    /// <summary>Appends a raw instruction.</summary>
    public BpfAssembler Raw(BpfInstruction instruction)
    {
        _insns.Add(instruction);
        return this;
    }

    private BpfAssembler Emit(byte code, BpfRegister dst, BpfRegister src, short off, int imm) => EmitRaw(code, dst, (byte)src, off, imm);

    private BpfAssembler EmitRaw(byte code, BpfRegister dst, byte src, short off, int imm)
    {
        _insns.Add(new BpfInstruction(code, (byte)dst, src, off, imm));
        return this;
    }

    private BpfAssembler EmitJump(byte code, BpfRegister dst, BpfRegister src, int imm, string label)
    {
        _jumps.Add((_insns.Count, label));
        return Emit(code, dst, src, 0, imm);
    }

    /// <summary>Resolves labels and map names (each map's fd) and returns the instructions.</summary>
    /// <exception cref="InvalidOperationException">An unknown label or map, or a jump out of range.</exception>
    public BpfInstruction[] Assemble(IReadOnlyDictionary<string, BpfMap>? maps = null)
    {
        var code = _insns.ToArray();
        foreach (var (at, label) in _jumps)
        {
            if (!_labels.TryGetValue(label, out int target))
                throw new InvalidOperationException($"jump at {at} to undefined label '{label}'");
            int off = target - at - 1;
            if (off is < short.MinValue or > short.MaxValue)
                throw new InvalidOperationException($"jump at {at} to '{label}' is out of the 16-bit offset range");
            code[at] = code[at].WithOffset((short)off);
        }
        foreach (var (at, name) in _mapRefs)
        {
            if (maps is null || !maps.TryGetValue(name, out var map))
                throw new InvalidOperationException($"instruction {at} references map '{name}', which was not given");
            code[at] = code[at].WithImmediate(map.Fd);
        }
        return code;
    }

    /// <summary>Assembles and loads the program.</summary>
    public BpfProgram Load(BpfProgramType type, IReadOnlyDictionary<string, BpfMap>? maps = null, BpfProgramOptions? options = null) =>
        BpfProgram.Load(type, Assemble(maps), options);
}
