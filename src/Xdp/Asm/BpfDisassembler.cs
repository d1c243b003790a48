using System.Globalization;
using System.Text;

namespace Netcore.Xdp;

/// <summary>
/// Prints instructions in the syntax of LLVM's BPF backend, line for line as
/// <c>llvm-objdump -d</c> does (index, raw bytes, text), without the symbol labels.
/// </summary>
public static class BpfDisassembler
{
    private static readonly string[] AluOps = ["+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "neg", "%=", "^=", "=", "s>>="];
    private static readonly Dictionary<int, string> JmpOps = new()
    {
        [0x10] = "==", [0x20] = ">", [0x30] = ">=", [0x40] = "&", [0x50] = "!=", [0x60] = "s>", [0x70] = "s>=", [0xa0] = "<", [0xb0] = "<=", [0xc0] = "s<", [0xd0] = "s<=",
    };

    /// <summary>Disassembles a program; one line per instruction (two-slot loads on one line), as llvm-objdump prints them.</summary>
    public static string Disassemble(ReadOnlySpan<BpfInstruction> instructions)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < instructions.Length; i++)
        {
            var insn = instructions[i];
            bool wide = insn.IsLoadImm64 && i + 1 < instructions.Length;
            sb.Append(CultureInfo.InvariantCulture, $"{i,8}:\t");
            AppendBytes(sb, insn);
            if (wide)
            {
                sb.Append(' ');
                AppendBytes(sb, instructions[i + 1]);
            }
            sb.Append('\t');
            sb.Append(Format(insn, wide ? instructions[i + 1] : null));
            sb.Append('\n');
            if (wide)
                i++;
        }
        return sb.ToString();
    }

    private static void AppendBytes(StringBuilder sb, BpfInstruction insn)
    {
        Span<byte> b = stackalloc byte[8];
        System.Runtime.InteropServices.MemoryMarshal.Write(b, in insn);
        for (int k = 0; k < 8; k++)
        {
            if (k > 0)
                sb.Append(' ');
            sb.Append(b[k].ToString("x2", CultureInfo.InvariantCulture));
        }
    }

    private static string Size(int sizeBits) => sizeBits switch { 0x00 => "u32", 0x08 => "u16", 0x10 => "u8", _ => "u64" };

    private static string Mem(string reg, short off) => off < 0 ? $"({reg} - {-off})" : $"({reg} + {off})";

    /// <summary>One instruction's text (<paramref name="next"/> is the second slot of a 64-bit load).</summary>
    public static string Format(BpfInstruction insn, BpfInstruction? next = null)
    {
        int code = insn.Opcode, cls = code & 7, op = code & 0xf0, size = code & 0x18, mode = code & 0xe0;
        bool x = (code & 0x08) != 0;
        string dst = "r" + insn.Dst, src = "r" + insn.Src;
        switch (cls)
        {
            case 0x07 or 0x04: // ALU64 / ALU
            {
                string p = cls == 0x07 ? "r" : "w";
                string d = p + insn.Dst, s = x ? p + insn.Src : insn.Immediate.ToString(CultureInfo.InvariantCulture);
                if (op == 0xd0)
                {
                    // BPF_END: byte swap; source bit selects big (to_be) or little endian.
                    return $"{dst} = {(x ? "be" : "le")}{insn.Immediate} {dst}";
                }
                if (op == 0x80)
                    return $"{d} = -{d}";
                int idx = op >> 4;
                return idx < AluOps.Length ? $"{d} {AluOps[idx]} {s}" : $"<unknown alu 0x{code:x2}>";
            }
            case 0x05 or 0x06: // JMP / JMP32
            {
                string off = insn.Offset >= 0 ? "+" + insn.Offset : insn.Offset.ToString(CultureInfo.InvariantCulture);
                if (code == 0x05)
                    return $"goto {off}";
                if (code == 0x85)
                    return $"call {insn.Immediate}";
                if (code == 0x95)
                    return "exit";
                string p = cls == 0x05 ? "r" : "w";
                string rhs = x ? p + insn.Src : insn.Immediate.ToString(CultureInfo.InvariantCulture);
                return JmpOps.TryGetValue(op, out string? o) ? $"if {p}{insn.Dst} {o} {rhs} goto {off}" : $"<unknown jmp 0x{code:x2}>";
            }
            case 0x01: // LDX
                return $"{dst} = *({Size(size)} *){Mem(src, insn.Offset)}";
            case 0x03 when mode == 0x60: // STX
                return $"*({Size(size)} *){Mem(dst, insn.Offset)} = {src}";
            case 0x03 when mode == 0xc0: // atomic
            {
                string r = size == 0x18 ? src : "w" + insn.Src;
                string target = $"*({Size(size)} *){Mem(dst, insn.Offset)}";
                int aop = insn.Immediate;
                return aop switch
                {
                    0x00 => $"lock {target} += {r}",
                    0x40 => $"lock {target} |= {r}",
                    0x50 => $"lock {target} &= {r}",
                    0xa0 => $"lock {target} ^= {r}",
                    0x01 => $"{r} = atomic_fetch_add(({Size(size)} *){Mem(dst, insn.Offset)}, {r})",
                    0x41 => $"{r} = atomic_fetch_or(({Size(size)} *){Mem(dst, insn.Offset)}, {r})",
                    0x51 => $"{r} = atomic_fetch_and(({Size(size)} *){Mem(dst, insn.Offset)}, {r})",
                    0xa1 => $"{r} = atomic_fetch_xor(({Size(size)} *){Mem(dst, insn.Offset)}, {r})",
                    0xe1 => $"{r} = xchg_{(size == 0x18 ? "64" : "32")}({Mem(dst, insn.Offset)}, {r})",
                    0xf1 => $"{(size == 0x18 ? "r0" : "w0")} = cmpxchg{(size == 0x18 ? "" : "32")}_{(size == 0x18 ? "64" : "32")}({Mem(dst, insn.Offset)}, {(size == 0x18 ? "r0" : "w0")}, {r})",
                    _ => $"<unknown atomic 0x{aop:x2}>",
                };
            }
            case 0x02: // ST imm
                return $"*({Size(size)} *){Mem(dst, insn.Offset)} = {insn.Immediate}";
            case 0x00 when code == 0x18:
            {
                long v = (uint)insn.Immediate | ((long)(next?.Immediate ?? 0) << 32);
                return $"{dst} = {v} ll";
            }
            case 0x00 when mode is 0x20 or 0x40: // LD_ABS / LD_IND
                return mode == 0x20 ? $"r0 = *({Size(size)} *)skb[{insn.Immediate}]" : $"r0 = *({Size(size)} *)skb[{src} + {insn.Immediate}]";
            default:
                return $"<unknown 0x{code:x2}>";
        }
    }
}
