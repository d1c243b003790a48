using Netcore.Xdp.Btf;
using Netcore.Xdp.Elf;

namespace Netcore.Xdp.Tests;

public class PinningAndParserTests
{
    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void PinByNameMapsKeepTheirContentsAcrossLoads()
    {
        string dir = $"/sys/fs/bpf/nct_pins_{Environment.ProcessId}";
        Directory.CreateDirectory(dir);
        try
        {
            var options = new BpfObjectOptions { PinDirectory = dir };
            using (var first = BpfObject.Load(BpfSources.Object("pinned"), options))
            {
                first.Map("persist").AsMap<uint, ulong>().Update(0, 100);
                first.Program("touch").TestRun(new byte[64], default);
                Assert.True(File.Exists(Path.Combine(dir, "persist")));
            }
            using var second = BpfObject.Load(BpfSources.Object("pinned"), options);
            var map = second.Map("persist").AsMap<uint, ulong>();
            Assert.Equal(101ul, map.Lookup(0));
            second.Program("touch").TestRun(new byte[64], default);
            Assert.Equal(102ul, map.Lookup(0));
        }
        finally
        {
            Shell.Sh($"rm -rf {dir}");
        }
    }

    [LinuxFact(Root = true, Tools = ["setpriv"])]
    public void WithoutCapabilitiesTheErrorSaysWhatIsNeeded()
    {
        string dll = typeof(Program).Assembly.Location;
        var r = Shell.Run("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "env", "DOTNET_CLI_HOME=/tmp", "HOME=/tmp", "dotnet", dll, "perm-child"], TimeSpan.FromSeconds(60));
        Assert.True(r.ExitCode == 0, r.StdOut + r.StdErr);
        Assert.Contains("BpfPermissionException", r.StdOut, StringComparison.Ordinal);
        Assert.Contains("needs CAP_BPF", r.StdOut, StringComparison.Ordinal);
        Assert.Contains("EPERM", r.StdOut, StringComparison.Ordinal);
    }

    [LinuxFact(Bpf = true)]
    public void ProgramPinAndReopen()
    {
        string path = $"/sys/fs/bpf/nct_prog_{Environment.ProcessId}";
        try
        {
            uint id;
            using (var prog = new BpfAssembler().Mov(BpfRegister.R0, 2).Exit().Load(BpfProgramType.Xdp, options: new BpfProgramOptions { Name = "pinme" }))
            {
                prog.Pin(path);
                id = prog.GetInfo().Id;
            }
            using var again = BpfProgram.FromPin(path);
            Assert.Equal(id, again.GetInfo().Id);
            Assert.Equal("pinme", again.Name);
            Assert.Equal(BpfProgramType.Xdp, again.Type);
            Assert.Equal(2u, again.TestRun(new byte[64], default).ReturnValue);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [LinuxFact(Tools = ["clang-14"])]
    public void MutatedObjectsFailWithTypedErrorsOnly()
    {
        byte[] valid = File.ReadAllBytes(BpfSources.Object("xdp_count"));
        var elf = ElfFile.Parse(valid);
        byte[] btf = elf.Data(elf.Find(".BTF")!).ToArray();
        Properties.Check(Properties.Mutations(valid), bytes =>
        {
            try
            {
                var e = ElfFile.Parse(bytes);
                foreach (var s in e.Sections)
                    e.RelocationsFor(s);
            }
            catch (BpfObjectException)
            {
            }
        }, maxTest: 2000);
        Properties.Check(Properties.Mutations(btf), bytes =>
        {
            try
            {
                var spec = BtfSpec.Parse(bytes);
                foreach (var t in spec.Types)
                    if (t.Kind is BtfKind.Struct or BtfKind.Array or BtfKind.Int)
                        spec.SizeOf(t.Id);
            }
            catch (BpfObjectException)
            {
            }
        }, maxTest: 2000);
    }

    [Fact]
    public void CoreEssentialNames()
    {
        Assert.Equal("task_struct", CoreRelocator.Essential("task_struct___v2"));
        Assert.Equal("iphdr", CoreRelocator.Essential("iphdr"));
    }

    [Fact]
    public void VerifierLogParsing()
    {
        const string log = "0: R1=ctx() R10=fp0\n; return data[20]; @ x.c:9\n0: (61) r1 = *(u32 *)(r1 +0)\n1: (71) r0 = *(u8 *)(r1 +20)\ninvalid access to packet\n";
        Assert.Equal(1, BpfProgram.LastInstruction(log));
        Assert.Equal("return data[20]; @ x.c:9", BpfProgram.LastSourceComment(log));
        Assert.Null(BpfProgram.LastInstruction("no instructions here"));
    }

    [Fact]
    public void SectionNamesMapToProgramTypes()
    {
        Assert.Equal(BpfProgramType.Xdp, BpfObject.SectionType("xdp")!.Value.Type);
        Assert.Equal(1u << 5, BpfObject.SectionType("xdp.frags")!.Value.Flags);
        Assert.Equal(BpfProgramType.SchedCls, BpfObject.SectionType("tc")!.Value.Type);
        Assert.Equal(BpfProgramType.SchedCls, BpfObject.SectionType("classifier/ingress")!.Value.Type);
        Assert.Equal(BpfProgramType.SchedCls, BpfObject.SectionType("tcx/egress")!.Value.Type);
        Assert.Equal(BpfAttachType.SkLookup, BpfObject.SectionType("sk_lookup")!.Value.Attach);
        Assert.Null(BpfObject.SectionType("xdpfoo"));
        Assert.Null(BpfObject.SectionType("tcp"));
    }
}

public class VerifierLogTests
{
    [LinuxFact(Bpf = true)]
    public void LogBufferGrowsUntilTheWholeLogFits()
    {
        // r0 = *(u8 *)(r2 + 0) with r2 = ctx->data and no bounds check: rejected near the end of a long log.
        var asm = new BpfAssembler().Load(BpfSize.Word, BpfRegister.R2, BpfRegister.R1, 0);
        for (int i = 0; i < 200; i++)
            asm.Mov(BpfRegister.R3, i);
        asm.Load(BpfSize.Byte, BpfRegister.R0, BpfRegister.R2, 0).Exit();
        var e = Assert.Throws<BpfVerifierException>(() => asm.Load(BpfProgramType.Xdp, options: new BpfProgramOptions { Name = "longlog", LogSize = 64 }));
        Assert.True(e.Log.Length > 64 * 4, $"log of {e.Log.Length} bytes");
        Assert.Contains("invalid access to packet", e.Log, StringComparison.Ordinal);
        Assert.Equal(201, e.Instruction);
        Assert.Null(e.SourceLine); // no BTF line info for assembled programs
        Assert.Equal("longlog", e.ProgramName);
    }
}

public class ObjectOptionsTests
{
    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void ConstantsAreWrittenIntoRodataBeforeLoad()
    {
        // xdp_magic returns XDP_PASS only while `const volatile __u32 magic == 42`.
        using var changed = BpfObject.Load(BpfSources.Object("xdp_count"), new BpfObjectOptions
        {
            Constants = new Dictionary<string, byte[]> { ["magic"] = BitConverter.GetBytes(41u) },
        });
        Assert.Equal(0u /* XDP_ABORTED */, changed.Program("xdp_magic").TestRun(new byte[64], default).ReturnValue);
        Assert.Equal(41u, changed.Global("magic").Read<uint>());
        Assert.True(changed.Global("magic").IsReadOnly);
        Assert.Throws<InvalidOperationException>(() => changed.Global("magic").Write(1u));
        Assert.False(changed.Global("version_data").IsReadOnly);
        // .rodata is frozen: user space can no longer write it.
        Assert.ThrowsAny<BpfException>(() => changed.Map(".rodata").Update(new byte[4], new byte[4]));
        Assert.Throws<ArgumentException>(() => BpfObject.Load(BpfSources.Object("xdp_count"), new BpfObjectOptions
        {
            Constants = new Dictionary<string, byte[]> { ["magic"] = new byte[8] },
        }));
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void ReplaceMapsSharesAMapBetweenObjects()
    {
        using var first = BpfObject.Load(BpfSources.Object("xdp_count"));
        using var second = BpfObject.Load(BpfSources.Object("xdp_count"), new BpfObjectOptions
        {
            ReplaceMaps = new Dictionary<string, BpfMap> { ["counters"] = first.Map("counters") },
        });
        Assert.Same(first.Map("counters"), second.Map("counters"));
        second.Program("xdp_pass").TestRun(new byte[64], default, repeat: 4);
        var counters = first.Map("counters").AsPerCpu<uint, ulong>();
        Span<ulong> v = stackalloc ulong[counters.CpuCount];
        Assert.True(counters.TryLookup(3, v));
        ulong sum = 0;
        foreach (ulong x in v) sum += x;
        Assert.Equal(4ul, sum);
        Assert.Contains(first.Map("counters").GetInfo().Id, second.Program("xdp_pass").GetInfo().MapIds);
    }
}

public class MapSlotTests
{
    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void ProgArrayAndMapInMapInitialValuesFromTheObject()
    {
        using var obj = BpfObject.Load(BpfSources.Object("slots"));
        var jumps = obj.Map("jumps").AsMap<uint, uint>();
        Assert.Equal(obj.Program("tail_drop").GetInfo().Id, jumps.Lookup(1));
        Assert.False(jumps.TryLookup(0, out _));
        Assert.Equal(obj.Map("inner1").GetInfo().Id, obj.Map("outer2").AsMap<uint, uint>().Lookup(0));
        // entry bumps inner1[0] through outer2, then tail-calls tail_drop.
        Assert.Equal(1u /* XDP_DROP */, obj.Program("entry").TestRun(new byte[64], default, repeat: 3).ReturnValue);
        Assert.Equal(3u, obj.Map("inner1").AsMap<uint, uint>().Lookup(0));
    }
}

public class CallbackTests
{
    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void BpfLoopCallbackIsRelocatedAsPseudoFunc()
    {
        using var obj = BpfObject.Load(BpfSources.Object("loop"));
        Assert.Equal(2u, obj.Program("looper").TestRun(new byte[64], default).ReturnValue);
        Assert.Equal(45ul, obj.Global("loop_sum").Read<ulong>()); // 0 + 1 + ... + 9
    }
}
