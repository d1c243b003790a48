using System.Runtime.InteropServices;

namespace Netcore.Xdp;

/// <summary>
/// One eBPF instruction (struct bpf_insn, include/uapi/linux/bpf.h): opcode, destination and
/// source registers (4 bits each), signed 16-bit offset and signed 32-bit immediate. A 64-bit
/// immediate load (BPF_LD | BPF_IMM | BPF_DW) takes two instructions.
/// </summary>
[StructLayout(LayoutKind.Sequential, Size = 8)]
public readonly record struct BpfInstruction
{
    private readonly byte _code;
    private readonly byte _regs;
    private readonly short _offset;
    private readonly int _imm;

    /// <summary>Creates an instruction.</summary>
    public BpfInstruction(byte opcode, byte dst, byte src, short offset, int immediate)
    {
        _code = opcode;
        _regs = (byte)((dst & 0xf) | ((src & 0xf) << 4));
        _offset = offset;
        _imm = immediate;
    }

    /// <summary>The opcode byte (class | size/source | mode/op).</summary>
    public byte Opcode => _code;

    /// <summary>Destination register 0-10.</summary>
    public byte Dst => (byte)(_regs & 0xf);

    /// <summary>Source register 0-10 (or a pseudo value for LD_IMM64 and calls).</summary>
    public byte Src => (byte)(_regs >> 4);

    /// <summary>Signed offset.</summary>
    public short Offset => _offset;

    /// <summary>Signed immediate.</summary>
    public int Immediate => _imm;

    /// <summary>The instruction class (low 3 bits).</summary>
    public byte Class => (byte)(_code & 7);

    /// <summary>True for the first half of a 64-bit immediate load (opcode 0x18).</summary>
    public bool IsLoadImm64 => _code == 0x18;

    /// <summary>True for a call (opcode 0x85).</summary>
    public bool IsCall => _code == 0x85;

    internal BpfInstruction WithImmediate(int imm) => new(_code, Dst, Src, _offset, imm);

    internal BpfInstruction WithSrc(byte src) => new(_code, Dst, src, _offset, _imm);

    internal BpfInstruction WithOffset(short off) => new(_code, Dst, Src, off, _imm);
}
