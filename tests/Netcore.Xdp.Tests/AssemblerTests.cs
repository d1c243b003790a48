using System.Text.RegularExpressions;

namespace Netcore.Xdp.Tests;

public class AssemblerTests
{
    [LinuxFact(Bpf = true)]
    public void AssembledProgramPassesVerifierAndRuns()
    {
        // Counts packets in an array map and returns XDP_DROP when the first byte is 0xff, else XDP_PASS.
        using var counts = BpfMap.Create(new BpfMapSpec { Type = BpfMapType.Array, KeySize = 4, ValueSize = 8, MaxEntries = 1, Name = "asm_counts" });
        var asm = new BpfAssembler()
            .Mov(BpfRegister.R6, BpfRegister.R1)                       // ctx
            .Store(BpfSize.Word, BpfRegister.R10, -4, 0)               // key = 0
            .Mov(BpfRegister.R2, BpfRegister.R10)
            .Alu(BpfAluOp.Add, BpfRegister.R2, -4)
            .LoadMap(BpfRegister.R1, "counts")
            .Call(BpfHelper.MapLookupElem)
            .JumpIf(BpfJumpOp.Eq, BpfRegister.R0, 0, "no_counter")
            .Mov(BpfRegister.R1, 1)
            .AtomicAdd(BpfSize.Double, BpfRegister.R0, 0, BpfRegister.R1)
            .Label("no_counter")
            .Load(BpfSize.Word, BpfRegister.R2, BpfRegister.R6, 0)      // data
            .Load(BpfSize.Word, BpfRegister.R3, BpfRegister.R6, 4)      // data_end
            .Mov(BpfRegister.R0, 2)                                     // XDP_PASS
            .Mov(BpfRegister.R4, BpfRegister.R2)
            .Alu(BpfAluOp.Add, BpfRegister.R4, 1)
            .JumpIf(BpfJumpOp.Gt, BpfRegister.R4, BpfRegister.R3, "out")
            .Load(BpfSize.Byte, BpfRegister.R4, BpfRegister.R2, 0)
            .JumpIf(BpfJumpOp.Ne, BpfRegister.R4, 0xff, "out")
            .Mov(BpfRegister.R0, 1)                                     // XDP_DROP
            .Label("out")
            .Exit();
        using var prog = asm.Load(BpfProgramType.Xdp, new Dictionary<string, BpfMap> { ["counts"] = counts }, new BpfProgramOptions { Name = "asm_xdp" });
        Assert.Equal(2u, prog.TestRun(new byte[64], default).ReturnValue);
        var ff = new byte[64];
        ff[0] = 0xff;
        Assert.Equal(1u, prog.TestRun(ff, default, repeat: 3).ReturnValue);
        Assert.Equal(4ul, counts.AsMap<uint, ulong>().Lookup(0));
        Assert.Equal("asm_xdp", prog.GetInfo().Name);
    }

    [LinuxFact(Bpf = true)]
    public void TestRun_ReportsTheAverageRunTimeInNanoseconds()
    {
        // An XDP program that only returns XDP_TX runs in a few to a few tens of nanoseconds: below a
        // TimeSpan's 100 ns tick, so Duration alone would read 0 (it did, before AverageNanoseconds).
        using var prog = new BpfAssembler().Mov(BpfRegister.R0, 3).Exit().Load(BpfProgramType.Xdp, null, new BpfProgramOptions { Name = "asm_tx" });
        var r = prog.TestRun(new byte[64], default, repeat: 200_000);
        Assert.Equal(3u, r.ReturnValue);
        Assert.InRange(r.AverageNanoseconds, 1u, 5_000u);
        Assert.Equal(r.AverageNanoseconds / 100, (uint)r.Duration.Ticks);
    }

    [Fact]
    public void UndefinedLabelAndMissingMapAreReported()
    {
        Assert.Contains("undefined label 'nowhere'", Assert.Throws<InvalidOperationException>(() => new BpfAssembler().Jump("nowhere").Exit().Assemble()).Message, StringComparison.Ordinal);
        Assert.Contains("map 'm'", Assert.Throws<InvalidOperationException>(() => new BpfAssembler().LoadMap(BpfRegister.R1, "m").Exit().Assemble()).Message, StringComparison.Ordinal);
    }

    [LinuxTheory(Tools = ["clang-14", "llvm-objdump-14"])]
    [InlineData("xdp_count")]
    [InlineData("core")]
    [InlineData("ringbuf")]
    [InlineData("tc_count")]
    [InlineData("sk_lookup")]
    public void DisassemblyMatchesLlvmObjdump(string source)
    {
        string obj = BpfSources.Object(source);
        string dump = Shell.Run("llvm-objdump-14", ["-d", obj]).EnsureSuccess("llvm-objdump").StdOut;
        // Instruction lines: "      12:\t<hex bytes>\t<text>" with an optional "<label>" after jump targets.
        var llvm = dump.Split('\n').Where(l => Regex.IsMatch(l, @"^\s+\d+:\t")).Select(StripLabel).ToList();
        var ours = new List<string>();
        var elf = Netcore.Xdp.Elf.ElfFile.Parse(File.ReadAllBytes(obj));
        foreach (var sec in elf.Sections.Where(s => (s.Flags & Netcore.Xdp.Elf.ElfSection.SHF_EXECINSTR) != 0 && s.Size > 0))
        {
            var insns = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, BpfInstruction>(elf.Data(sec).Span);
            ours.AddRange(BpfDisassembler.Disassemble(insns).TrimEnd('\n').Split('\n'));
        }
        Assert.True(llvm.Count > 10);
        Assert.Equal(llvm, ours);
    }

    private static string StripLabel(string line) => Regex.Replace(line, @" <[^>]+>$", "");
}
