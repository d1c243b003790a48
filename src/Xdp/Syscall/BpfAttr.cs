#pragma warning disable CS8981, CS0649 // C names kept as in linux/bpf.h; fields set through pointers
using System.Runtime.InteropServices;

namespace Netcore.Xdp.Syscall;

// One blittable struct per bpf(2) command: the member of `union bpf_attr` the command reads
// (include/uapi/linux/bpf.h). The kernel accepts an attr shorter than its own union and
// requires every byte past what it knows to be zero (bpf_check_uarg_tail_zero), so each struct
// is exactly as long as the fields it uses. Offsets are checked against the C header in
// BpfAttrLayoutTests.

/// <summary>BPF_MAP_CREATE.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct bpf_attr_map_create
{
    public uint map_type, key_size, value_size, max_entries, map_flags, inner_map_fd, numa_node;
    public fixed byte map_name[16];
    public uint map_ifindex, btf_fd, btf_key_type_id, btf_value_type_id, btf_vmlinux_value_type_id;
    public ulong map_extra;
}

/// <summary>BPF_MAP_LOOKUP_ELEM, UPDATE_ELEM, DELETE_ELEM, GET_NEXT_KEY, LOOKUP_AND_DELETE_ELEM.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_map_elem
{
    public uint map_fd;
    public uint pad;
    public ulong key;
    public ulong value; // or next_key
    public ulong flags;
}

/// <summary>BPF_MAP_*_BATCH.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_map_batch
{
    public ulong in_batch, out_batch, keys, values;
    public uint count, map_fd;
    public ulong elem_flags, flags;
}

/// <summary>BPF_PROG_LOAD (log_true_size is 6.4+; older kernels see it as a zero tail).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct bpf_attr_prog_load
{
    public uint prog_type, insn_cnt;
    public ulong insns, license;
    public uint log_level, log_size;
    public ulong log_buf;
    public uint kern_version, prog_flags;
    public fixed byte prog_name[16];
    public uint prog_ifindex, expected_attach_type, prog_btf_fd, func_info_rec_size;
    public ulong func_info;
    public uint func_info_cnt, line_info_rec_size;
    public ulong line_info;
    public uint line_info_cnt, attach_btf_id, attach_prog_fd, core_relo_cnt;
    public ulong fd_array, core_relos;
    public uint core_relo_rec_size, log_true_size;
}

/// <summary>BPF_OBJ_PIN, BPF_OBJ_GET (without the 6.5 path_fd, which we never use).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_obj
{
    public ulong pathname;
    public uint bpf_fd, file_flags;
}

/// <summary>BPF_PROG_TEST_RUN.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_test_run
{
    public uint prog_fd, retval, data_size_in, data_size_out;
    public ulong data_in, data_out;
    public uint repeat, duration, ctx_size_in, ctx_size_out;
    public ulong ctx_in, ctx_out;
    public uint flags, cpu, batch_size;
    public uint pad;
}

/// <summary>BPF_*_GET_NEXT_ID and BPF_*_GET_FD_BY_ID.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_get_id
{
    public uint start_id, next_id, open_flags;
}

/// <summary>BPF_OBJ_GET_INFO_BY_FD.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_info
{
    public uint bpf_fd, info_len;
    public ulong info;
}

/// <summary>BPF_BTF_LOAD.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_btf_load
{
    public ulong btf, btf_log_buf;
    public uint btf_size, btf_log_size, btf_log_level, btf_log_true_size;
}

/// <summary>BPF_LINK_CREATE: the common head and the tcx member of the trailing union (6.6).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_link_create
{
    public uint prog_fd, target_fd, attach_type, flags;
    public uint relative_fd;  // tcx.relative_fd / relative_id; target_btf_id for tracing
    public uint pad;
    public ulong expected_revision;
}

/// <summary>BPF_LINK_UPDATE.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_link_update
{
    public uint link_fd, new_prog_fd, flags, old_prog_fd;
}

/// <summary>BPF_LINK_DETACH.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_link_detach
{
    public uint link_fd;
}

/// <summary>BPF_PROG_ATTACH / BPF_PROG_DETACH (legacy attach, used for probing only).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_attr_prog_attach
{
    public uint target_fd, attach_bpf_fd, attach_type, attach_flags, replace_bpf_fd;
}

/// <summary>struct bpf_insn: 8 bytes, dst/src registers packed in one byte (little endian).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_insn_raw
{
    public byte code, regs;
    public short off;
    public int imm;
}

/// <summary>struct bpf_prog_info (6.1 layout; the kernel fills up to info_len).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct bpf_prog_info
{
    public uint type, id;
    public fixed byte tag[8];
    public uint jited_prog_len, xlated_prog_len;
    public ulong jited_prog_insns, xlated_prog_insns, load_time;
    public uint created_by_uid, nr_map_ids;
    public ulong map_ids;
    public fixed byte name[16];
    public uint ifindex, gpl_compatible;
    public ulong netns_dev, netns_ino;
    public uint nr_jited_ksyms, nr_jited_func_lens;
    public ulong jited_ksyms, jited_func_lens;
    public uint btf_id, func_info_rec_size;
    public ulong func_info;
    public uint nr_func_info, nr_line_info;
    public ulong line_info, jited_line_info;
    public uint nr_jited_line_info, line_info_rec_size, jited_line_info_rec_size, nr_prog_tags;
    public ulong prog_tags, run_time_ns, run_cnt, recursion_misses;
    public uint verified_insns, attach_btf_obj_id, attach_btf_id;
    public uint pad;
}

/// <summary>struct bpf_map_info.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct bpf_map_info
{
    public uint type, id, key_size, value_size, max_entries, map_flags;
    public fixed byte name[16];
    public uint ifindex, btf_vmlinux_value_type_id;
    public ulong netns_dev, netns_ino;
    public uint btf_id, btf_key_type_id, btf_value_type_id;
    public uint pad;
    public ulong map_extra;
}

/// <summary>struct bpf_link_info: head plus the 16 bytes the xdp, netns and tcx members use.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_link_info
{
    public uint type, id, prog_id;
    public uint pad;
    public uint u0, u1;     // xdp.ifindex | netns.netns_ino, netns.attach_type | tcx.ifindex, tcx.attach_type
    public ulong u2, u3, u4, u5;
}

/// <summary>struct bpf_func_info.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_func_info
{
    public uint insn_off, type_id;
}

/// <summary>struct bpf_line_info.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct bpf_line_info
{
    public uint insn_off, file_name_off, line_off, line_col;
}

/// <summary>struct xdp_md: the XDP context passed to BPF_PROG_TEST_RUN.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct xdp_md
{
    public uint data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex;
}
