using System.Runtime.InteropServices;
using Netcore.Xdp.Syscall;

namespace Netcore.Xdp.Tests;

/// <summary>Checks every bpf_attr member and info struct against linux/bpf.h with gcc.</summary>
public class LayoutTests
{
    private static readonly (Type Managed, string Field, string CExpr)[] AttrFields =
    [
        (typeof(bpf_attr_map_create), "map_type", "map_type"), (typeof(bpf_attr_map_create), "key_size", "key_size"),
        (typeof(bpf_attr_map_create), "value_size", "value_size"), (typeof(bpf_attr_map_create), "max_entries", "max_entries"),
        (typeof(bpf_attr_map_create), "map_flags", "map_flags"), (typeof(bpf_attr_map_create), "inner_map_fd", "inner_map_fd"),
        (typeof(bpf_attr_map_create), "numa_node", "numa_node"), (typeof(bpf_attr_map_create), "map_name", "map_name"),
        (typeof(bpf_attr_map_create), "map_ifindex", "map_ifindex"), (typeof(bpf_attr_map_create), "btf_fd", "btf_fd"),
        (typeof(bpf_attr_map_create), "btf_key_type_id", "btf_key_type_id"), (typeof(bpf_attr_map_create), "btf_value_type_id", "btf_value_type_id"),
        (typeof(bpf_attr_map_create), "btf_vmlinux_value_type_id", "btf_vmlinux_value_type_id"), (typeof(bpf_attr_map_create), "map_extra", "map_extra"),
        (typeof(bpf_attr_map_elem), "map_fd", "map_fd"), (typeof(bpf_attr_map_elem), "key", "key"),
        (typeof(bpf_attr_map_elem), "value", "value"), (typeof(bpf_attr_map_elem), "flags", "flags"),
        (typeof(bpf_attr_map_batch), "in_batch", "batch.in_batch"), (typeof(bpf_attr_map_batch), "out_batch", "batch.out_batch"),
        (typeof(bpf_attr_map_batch), "keys", "batch.keys"), (typeof(bpf_attr_map_batch), "values", "batch.values"),
        (typeof(bpf_attr_map_batch), "count", "batch.count"), (typeof(bpf_attr_map_batch), "map_fd", "batch.map_fd"),
        (typeof(bpf_attr_map_batch), "elem_flags", "batch.elem_flags"), (typeof(bpf_attr_map_batch), "flags", "batch.flags"),
        (typeof(bpf_attr_prog_load), "prog_type", "prog_type"), (typeof(bpf_attr_prog_load), "insn_cnt", "insn_cnt"),
        (typeof(bpf_attr_prog_load), "insns", "insns"), (typeof(bpf_attr_prog_load), "license", "license"),
        (typeof(bpf_attr_prog_load), "log_level", "log_level"), (typeof(bpf_attr_prog_load), "log_size", "log_size"),
        (typeof(bpf_attr_prog_load), "log_buf", "log_buf"), (typeof(bpf_attr_prog_load), "kern_version", "kern_version"),
        (typeof(bpf_attr_prog_load), "prog_flags", "prog_flags"), (typeof(bpf_attr_prog_load), "prog_name", "prog_name"),
        (typeof(bpf_attr_prog_load), "prog_ifindex", "prog_ifindex"), (typeof(bpf_attr_prog_load), "expected_attach_type", "expected_attach_type"),
        (typeof(bpf_attr_prog_load), "prog_btf_fd", "prog_btf_fd"), (typeof(bpf_attr_prog_load), "func_info_rec_size", "func_info_rec_size"),
        (typeof(bpf_attr_prog_load), "func_info", "func_info"), (typeof(bpf_attr_prog_load), "func_info_cnt", "func_info_cnt"),
        (typeof(bpf_attr_prog_load), "line_info_rec_size", "line_info_rec_size"), (typeof(bpf_attr_prog_load), "line_info", "line_info"),
        (typeof(bpf_attr_prog_load), "line_info_cnt", "line_info_cnt"), (typeof(bpf_attr_prog_load), "attach_btf_id", "attach_btf_id"),
        (typeof(bpf_attr_prog_load), "attach_prog_fd", "attach_prog_fd"), (typeof(bpf_attr_prog_load), "core_relo_cnt", "core_relo_cnt"),
        (typeof(bpf_attr_prog_load), "fd_array", "fd_array"), (typeof(bpf_attr_prog_load), "core_relos", "core_relos"),
        (typeof(bpf_attr_prog_load), "core_relo_rec_size", "core_relo_rec_size"),
        (typeof(bpf_attr_obj), "pathname", "pathname"), (typeof(bpf_attr_obj), "bpf_fd", "bpf_fd"), (typeof(bpf_attr_obj), "file_flags", "file_flags"),
        (typeof(bpf_attr_test_run), "prog_fd", "test.prog_fd"), (typeof(bpf_attr_test_run), "retval", "test.retval"),
        (typeof(bpf_attr_test_run), "data_size_in", "test.data_size_in"), (typeof(bpf_attr_test_run), "data_size_out", "test.data_size_out"),
        (typeof(bpf_attr_test_run), "data_in", "test.data_in"), (typeof(bpf_attr_test_run), "data_out", "test.data_out"),
        (typeof(bpf_attr_test_run), "repeat", "test.repeat"), (typeof(bpf_attr_test_run), "duration", "test.duration"),
        (typeof(bpf_attr_test_run), "ctx_size_in", "test.ctx_size_in"), (typeof(bpf_attr_test_run), "ctx_size_out", "test.ctx_size_out"),
        (typeof(bpf_attr_test_run), "ctx_in", "test.ctx_in"), (typeof(bpf_attr_test_run), "ctx_out", "test.ctx_out"),
        (typeof(bpf_attr_test_run), "flags", "test.flags"), (typeof(bpf_attr_test_run), "cpu", "test.cpu"), (typeof(bpf_attr_test_run), "batch_size", "test.batch_size"),
        (typeof(bpf_attr_get_id), "start_id", "start_id"), (typeof(bpf_attr_get_id), "next_id", "next_id"), (typeof(bpf_attr_get_id), "open_flags", "open_flags"),
        (typeof(bpf_attr_info), "bpf_fd", "info.bpf_fd"), (typeof(bpf_attr_info), "info_len", "info.info_len"), (typeof(bpf_attr_info), "info", "info.info"),
        (typeof(bpf_attr_btf_load), "btf", "btf"), (typeof(bpf_attr_btf_load), "btf_log_buf", "btf_log_buf"),
        (typeof(bpf_attr_btf_load), "btf_size", "btf_size"), (typeof(bpf_attr_btf_load), "btf_log_size", "btf_log_size"),
        (typeof(bpf_attr_btf_load), "btf_log_level", "btf_log_level"),
        (typeof(bpf_attr_link_create), "prog_fd", "link_create.prog_fd"), (typeof(bpf_attr_link_create), "target_fd", "link_create.target_fd"),
        (typeof(bpf_attr_link_create), "attach_type", "link_create.attach_type"), (typeof(bpf_attr_link_create), "flags", "link_create.flags"),
        (typeof(bpf_attr_link_create), "relative_fd", "link_create.target_btf_id"),
        (typeof(bpf_attr_link_update), "link_fd", "link_update.link_fd"), (typeof(bpf_attr_link_update), "new_prog_fd", "link_update.new_prog_fd"),
        (typeof(bpf_attr_link_update), "flags", "link_update.flags"), (typeof(bpf_attr_link_update), "old_prog_fd", "link_update.old_prog_fd"),
        (typeof(bpf_attr_link_detach), "link_fd", "link_detach.link_fd"),
        (typeof(bpf_attr_prog_attach), "target_fd", "target_fd"), (typeof(bpf_attr_prog_attach), "attach_bpf_fd", "attach_bpf_fd"),
        (typeof(bpf_attr_prog_attach), "attach_type", "attach_type"), (typeof(bpf_attr_prog_attach), "attach_flags", "attach_flags"),
        (typeof(bpf_attr_prog_attach), "replace_bpf_fd", "replace_bpf_fd"),
    ];

    [LinuxFact(Tools = ["gcc"])]
    public void BpfAttrMembersMatchTheHeader()
    {
        var values = CHeaderProbe.Evaluate(["linux/bpf.h"], AttrFields.Select(f => $"offsetof(union bpf_attr, {f.CExpr})"));
        var errors = AttrFields
            .Where(f => values[$"offsetof(union bpf_attr, {f.CExpr})"] != Marshal.OffsetOf(f.Managed, f.Field).ToInt64())
            .Select(f => $"{f.Managed.Name}.{f.Field}: C {values[$"offsetof(union bpf_attr, {f.CExpr})"]}, ours {Marshal.OffsetOf(f.Managed, f.Field)}")
            .ToList();
        Assert.Empty(errors);
        // log_true_size (6.4) follows core_relo_rec_size; 6.1 headers end the member there.
        Assert.Equal(Marshal.OffsetOf<bpf_attr_prog_load>("core_relo_rec_size") + 4, Marshal.OffsetOf<bpf_attr_prog_load>("log_true_size"));
    }

    [LinuxFact(Tools = ["gcc"])]
    public void InfoStructsMatchTheHeader()
    {
        var errors = StructLayoutCheck.Compare(["linux/bpf.h"],
        [
            new StructLayoutSpec("struct bpf_prog_info", typeof(bpf_prog_info), ("type", "type"), ("id", "id"), ("tag", "tag"),
                ("jited_prog_len", "jited_prog_len"), ("xlated_prog_len", "xlated_prog_len"), ("load_time", "load_time"), ("nr_map_ids", "nr_map_ids"),
                ("map_ids", "map_ids"), ("name", "name"), ("ifindex", "ifindex"), ("netns_dev", "netns_dev"), ("btf_id", "btf_id"),
                ("nr_func_info", "nr_func_info"), ("nr_line_info", "nr_line_info"), ("run_time_ns", "run_time_ns"), ("run_cnt", "run_cnt"),
                ("recursion_misses", "recursion_misses"), ("verified_insns", "verified_insns"), ("attach_btf_obj_id", "attach_btf_obj_id"),
                ("attach_btf_id", "attach_btf_id")),
            new StructLayoutSpec("struct bpf_map_info", typeof(bpf_map_info), ("type", "type"), ("id", "id"), ("key_size", "key_size"),
                ("value_size", "value_size"), ("max_entries", "max_entries"), ("map_flags", "map_flags"), ("name", "name"), ("ifindex", "ifindex"),
                ("btf_vmlinux_value_type_id", "btf_vmlinux_value_type_id"), ("netns_dev", "netns_dev"), ("netns_ino", "netns_ino"),
                ("btf_id", "btf_id"), ("btf_key_type_id", "btf_key_type_id"), ("btf_value_type_id", "btf_value_type_id"), ("map_extra", "map_extra")),
            new StructLayoutSpec("struct bpf_func_info", typeof(bpf_func_info), ("insn_off", "insn_off"), ("type_id", "type_id")),
            new StructLayoutSpec("struct bpf_line_info", typeof(bpf_line_info), ("insn_off", "insn_off"), ("file_name_off", "file_name_off"),
                ("line_off", "line_off"), ("line_col", "line_col")),
            new StructLayoutSpec("struct xdp_md", typeof(xdp_md), ("data", "data"), ("data_end", "data_end"), ("data_meta", "data_meta"),
                ("ingress_ifindex", "ingress_ifindex"), ("rx_queue_index", "rx_queue_index"), ("egress_ifindex", "egress_ifindex")),
            new StructLayoutSpec("struct bpf_insn", typeof(bpf_insn_raw), ("code", "code"), ("off", "off"), ("imm", "imm")),
        ]);
        Assert.Empty(errors);
        Assert.Equal(8, Marshal.SizeOf<BpfInstruction>());
        var link = CHeaderProbe.Evaluate(["linux/bpf.h"], ["offsetof(struct bpf_link_info, xdp.ifindex)", "offsetof(struct bpf_link_info, netns.attach_type)", "offsetof(struct bpf_link_info, prog_id)"]);
        Assert.Equal(link["offsetof(struct bpf_link_info, xdp.ifindex)"], Marshal.OffsetOf<bpf_link_info>("u0").ToInt64());
        Assert.Equal(link["offsetof(struct bpf_link_info, netns.attach_type)"], Marshal.OffsetOf<bpf_link_info>("u1").ToInt64());
        Assert.Equal(link["offsetof(struct bpf_link_info, prog_id)"], Marshal.OffsetOf<bpf_link_info>("prog_id").ToInt64());
    }

    [LinuxFact(Tools = ["gcc"])]
    public void EnumValuesMatchTheHeader()
    {
        var v = CHeaderProbe.Evaluate(["linux/bpf.h", "linux/if_link.h"],
            ["BPF_PROG_TYPE_XDP", "BPF_PROG_TYPE_SK_LOOKUP", "BPF_PROG_TYPE_SCHED_CLS", "BPF_MAP_TYPE_RINGBUF", "BPF_MAP_TYPE_LPM_TRIE", "BPF_MAP_TYPE_XSKMAP",
             "BPF_MAP_TYPE_HASH_OF_MAPS", "BPF_MAP_TYPE_BLOOM_FILTER", "BPF_XDP", "BPF_SK_LOOKUP", "BPF_LINK_CREATE", "BPF_LINK_DETACH", "BPF_MAP_DELETE_BATCH",
             "BPF_F_MMAPABLE", "BPF_F_RDONLY_PROG", "BPF_NOEXIST", "BPF_F_LOCK", "XDP_FLAGS_SKB_MODE", "XDP_FLAGS_DRV_MODE", "BPF_LINK_TYPE_XDP", "BPF_LINK_TYPE_NETNS"]);
        Assert.Equal((long)BpfProgramType.Xdp, v["BPF_PROG_TYPE_XDP"]);
        Assert.Equal((long)BpfProgramType.SkLookup, v["BPF_PROG_TYPE_SK_LOOKUP"]);
        Assert.Equal((long)BpfProgramType.SchedCls, v["BPF_PROG_TYPE_SCHED_CLS"]);
        Assert.Equal((long)BpfMapType.RingBuf, v["BPF_MAP_TYPE_RINGBUF"]);
        Assert.Equal((long)BpfMapType.LpmTrie, v["BPF_MAP_TYPE_LPM_TRIE"]);
        Assert.Equal((long)BpfMapType.XskMap, v["BPF_MAP_TYPE_XSKMAP"]);
        Assert.Equal((long)BpfMapType.HashOfMaps, v["BPF_MAP_TYPE_HASH_OF_MAPS"]);
        Assert.Equal((long)BpfMapType.BloomFilter, v["BPF_MAP_TYPE_BLOOM_FILTER"]);
        Assert.Equal((long)BpfAttachType.Xdp, v["BPF_XDP"]);
        Assert.Equal((long)BpfAttachType.SkLookup, v["BPF_SK_LOOKUP"]);
        Assert.Equal((long)BpfCmd.LinkCreate, v["BPF_LINK_CREATE"]);
        Assert.Equal((long)BpfCmd.LinkDetach, v["BPF_LINK_DETACH"]);
        Assert.Equal((long)BpfCmd.MapDeleteBatch, v["BPF_MAP_DELETE_BATCH"]);
        Assert.Equal((long)BpfMapFlags.Mmapable, v["BPF_F_MMAPABLE"]);
        Assert.Equal((long)BpfMapFlags.ReadOnlyProgram, v["BPF_F_RDONLY_PROG"]);
        Assert.Equal((long)MapUpdateFlags.NoExist, v["BPF_NOEXIST"]);
        Assert.Equal((long)MapUpdateFlags.Lock, v["BPF_F_LOCK"]);
        Assert.Equal((long)XdpMode.Generic, v["XDP_FLAGS_SKB_MODE"]);
        Assert.Equal((long)XdpMode.Native, v["XDP_FLAGS_DRV_MODE"]);
        Assert.Equal((long)BpfLinkType.Xdp, v["BPF_LINK_TYPE_XDP"]);
        Assert.Equal((long)BpfLinkType.Netns, v["BPF_LINK_TYPE_NETNS"]);
    }
}
