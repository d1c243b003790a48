using System.Text.Json;

namespace Netcore.Xdp.Tests;

/// <summary>bpftool (the kernel tree's own tool) must report what our API reports.</summary>
public class BpftoolTests
{
    [LinuxFact(Bpf = true, Tools = ["clang-14", "bpftool"])]
    public void ProgramInfoAgreesWithBpftool()
    {
        using var obj = BpfObject.Load(BpfSources.Object("xdp_count"));
        var info = obj.Program("xdp_count").GetInfo();
        var j = JsonDocument.Parse(Shell.ShOk($"bpftool prog show id {info.Id} -j")).RootElement;
        Assert.Equal("xdp", j.GetProperty("type").GetString());
        Assert.Equal(info.Name, j.GetProperty("name").GetString());
        Assert.Equal(info.Tag, j.GetProperty("tag").GetString());
        Assert.Equal(info.Jited, j.GetProperty("jited").GetBoolean());
        Assert.Equal(info.JitedSize, j.GetProperty("bytes_jited").GetUInt32());
        Assert.Equal(info.TranslatedSize, j.GetProperty("bytes_xlated").GetUInt32());
        Assert.Equal(info.BtfId, j.GetProperty("btf_id").GetUInt32());
        Assert.Equal(obj.BtfId, info.BtfId);
        Assert.Equal(info.MapIds.Order(), j.GetProperty("map_ids").EnumerateArray().Select(e => e.GetUInt32()).Order());
        Assert.True(info.VerifiedInstructions > 0);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14", "bpftool"])]
    public void SameTagAsBpftoolLoadingTheSameObject()
    {
        // The tag hashes the instructions with map fds cleared (kernel/bpf/core.c bpf_prog_calc_tag), so a
        // loader that relocates exactly like libbpf gets the same tag for the same object.
        string dir = $"/sys/fs/bpf/nct_tag_{Environment.ProcessId}";
        try
        {
            Shell.ShOk($"bpftool prog loadall {BpfSources.Object("xdp_count")} {dir}");
            var theirs = JsonDocument.Parse(Shell.ShOk($"bpftool prog show pinned {dir}/xdp_count -j")).RootElement.GetProperty("tag").GetString();
            using var obj = BpfObject.Load(BpfSources.Object("xdp_count"));
            Assert.Equal(theirs, obj.Program("xdp_count").GetInfo().Tag);
        }
        finally
        {
            Shell.Sh($"rm -rf {dir}");
        }
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14", "bpftool"])]
    public void MapDumpAgreesWithBpftool()
    {
        using var obj = BpfObject.Load(BpfSources.Object("xdp_count"));
        var m = obj.Map("by_source");
        var map = m.AsMap<uint, ulong>();
        for (uint i = 1; i <= 20; i++)
            map.Update(i, i * 1000);
        var info = m.GetInfo();
        var show = JsonDocument.Parse(Shell.ShOk($"bpftool map show id {info.Id} -j")).RootElement;
        Assert.Equal("hash", show.GetProperty("type").GetString());
        Assert.Equal(info.Name, show.GetProperty("name").GetString());
        Assert.Equal(info.KeySize, show.GetProperty("bytes_key").GetUInt32());
        Assert.Equal(info.ValueSize, show.GetProperty("bytes_value").GetUInt32());
        Assert.Equal(info.MaxEntries, show.GetProperty("max_entries").GetUInt32());
        var dump = JsonDocument.Parse(Shell.ShOk($"bpftool map dump id {info.Id} -j")).RootElement;
        var theirs = dump.EnumerateArray().ToDictionary(e => e.GetProperty("formatted").GetProperty("key").GetUInt32(), e => e.GetProperty("formatted").GetProperty("value").GetUInt64());
        var ours = new Dictionary<uint, ulong>();
        foreach (uint k in map.Keys)
            ours[k] = map.Lookup(k);
        Assert.Equal(ours.OrderBy(kv => kv.Key), theirs.OrderBy(kv => kv.Key));
    }
}
