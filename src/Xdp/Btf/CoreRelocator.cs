namespace Netcore.Xdp.Btf;

/// <summary>
/// CO-RE relocations (struct bpf_core_relo, include/uapi/linux/bpf.h; algorithm after
/// Documentation/bpf/llvm_reloc.rst and libbpf relo_core.c): a field access recorded against the
/// program's own BTF is re-resolved by name against the running kernel's BTF, and the
/// instruction's offset or immediate is rewritten.
/// </summary>
internal static class CoreRelocator
{
    // enum bpf_core_relo_kind
    public const uint FieldByteOffset = 0, FieldByteSize = 1, FieldExists = 2, FieldSigned = 3, TypeIdLocal = 6, TypeIdTarget = 7, TypeExists = 8, TypeSize = 9;

    private readonly record struct Access(string? Member, int Index);

    /// <summary>Computes the new value for one relocation; null when the target lacks the field/type.</summary>
    public static long? Resolve(BtfSpec local, BtfSpec target, uint typeId, string accessStr, uint kind)
    {
        var localType = local[typeId];
        string essential = Essential(localType.Name);
        if (kind == TypeIdLocal)
            return typeId;
        int[] spec = accessStr.Split(':').Select(s => int.Parse(s, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        // Walk the local type to turn member indices into names.
        var path = new List<Access>();
        uint cur = typeId;
        for (int i = 1; i < spec.Length; i++)
        {
            var t = local.SkipModsAndTypedefs(cur);
            if (t.Kind is BtfKind.Struct or BtfKind.Union)
            {
                if (spec[i] >= t.Members.Length)
                    throw new BpfObjectException($"CO-RE: access {accessStr} beyond the members of {localType.Name}");
                var m = t.Members[spec[i]];
                path.Add(new Access(m.Name, spec[i]));
                cur = m.Type;
            }
            else if (t.Kind == BtfKind.Array)
            {
                path.Add(new Access(null, spec[i]));
                cur = t.Array.Elem;
            }
            else
                throw new BpfObjectException($"CO-RE: access {accessStr} walks into a {t.Kind} in {localType.Name}");
        }
        var localKind = local.SkipModsAndTypedefs(typeId).Kind;
        foreach (uint cand in target.ByName(essential))
        {
            var ct = target[cand];
            var ck = target.SkipModsAndTypedefs(cand).Kind;
            if (ck != localKind && !(ck is BtfKind.Struct or BtfKind.Union && localKind is BtfKind.Struct or BtfKind.Union))
                continue;
            switch (kind)
            {
                case TypeExists: return 1;
                case TypeSize: return target.SizeOf(cand);
                case TypeIdTarget: return cand;
            }
            long bits = (spec.Length > 0 ? spec[0] : 0) * (long)target.SizeOf(cand) * 8;
            uint tc = cand;
            bool ok = true;
            foreach (var a in path)
            {
                var t = target.SkipModsAndTypedefs(tc);
                if (a.Member is null)
                {
                    if (t.Kind != BtfKind.Array) { ok = false; break; }
                    bits += a.Index * (long)target.SizeOf(t.Array.Elem) * 8;
                    tc = t.Array.Elem;
                }
                else
                {
                    if (!FindMember(target, t, a.Member, 0, out long mbits, out uint mtype)) { ok = false; break; }
                    bits += mbits;
                    tc = mtype;
                }
            }
            if (!ok)
                continue;
            return kind switch
            {
                FieldByteOffset => bits / 8,
                FieldByteSize => target.SizeOf(tc),
                FieldExists => 1,
                FieldSigned => target.SkipModsAndTypedefs(tc) is { Kind: BtfKind.Int } it && (it.Extra & 0x01000000) != 0 ? 1 : 0,
                _ => throw new BpfObjectException($"CO-RE relocation kind {kind} is not supported"),
            };
        }
        return kind is FieldExists or TypeExists ? 0 : null;
    }

    /// <summary>Finds a member by name, descending into anonymous struct/union members.</summary>
    private static bool FindMember(BtfSpec btf, BtfType t, string name, int depth, out long bits, out uint type)
    {
        bits = 0;
        type = 0;
        if (t.Kind is not (BtfKind.Struct or BtfKind.Union) || depth > 16)
            return false;
        foreach (var m in t.Members)
        {
            // btf_member.offset: with kind_flag, bits 0-23 offset and 24-31 bitfield size.
            long off = t.KindFlag ? m.Offset & 0xffffff : m.Offset;
            if (m.Name == name)
            {
                bits = off;
                type = m.Type;
                return true;
            }
            if (m.Name.Length == 0 && FindMember(btf, btf.SkipModsAndTypedefs(m.Type), name, depth + 1, out long inner, out type))
            {
                bits = off + inner;
                return true;
            }
        }
        return false;
    }

    /// <summary>"task_struct___v2" → "task_struct" (the ___ flavor suffix is ignored when matching).</summary>
    public static string Essential(string name)
    {
        int i = name.IndexOf("___", StringComparison.Ordinal);
        return i > 0 ? name[..i] : name;
    }

    /// <summary>Rewrites one instruction with the relocated value (libbpf bpf_core_patch_insn).</summary>
    public static void Patch(BpfInstruction[] insns, int at, long value, uint kind)
    {
        var insn = insns[at];
        switch (insn.Class)
        {
            case 4 or 7: // BPF_ALU, BPF_ALU64 with an immediate
                insns[at] = insn.WithImmediate((int)value);
                break;
            case 1 or 2 or 3 when kind == FieldByteOffset: // BPF_LDX, BPF_ST, BPF_STX: the memory offset
                if (value is < short.MinValue or > short.MaxValue)
                    throw new BpfObjectException($"CO-RE: offset {value} does not fit instruction {at}");
                insns[at] = insn.WithOffset((short)value);
                break;
            case 0 when insn.IsLoadImm64:
                insns[at] = insn.WithImmediate((int)value);
                insns[at + 1] = insns[at + 1].WithImmediate((int)(value >> 32));
                break;
            default:
                throw new BpfObjectException($"CO-RE: cannot patch instruction {at} (opcode 0x{insn.Opcode:x2}) for relocation kind {kind}");
        }
    }
}
