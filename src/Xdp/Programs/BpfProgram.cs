using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Netcore.Interop;
using Netcore.Xdp.Syscall;

namespace Netcore.Xdp;

/// <summary>Options for loading a program from instructions.</summary>
public sealed record BpfProgramOptions
{
    /// <summary>Program name (up to 15 characters kept by the kernel).</summary>
    public string? Name { get; init; }
    /// <summary>License; GPL-only helpers need a GPL-compatible one. Default "GPL".</summary>
    public string License { get; init; } = "GPL";
    /// <summary>Expected attach type (required for sk_lookup: <see cref="BpfAttachType.SkLookup"/>).</summary>
    public BpfAttachType? ExpectedAttachType { get; init; }
    /// <summary>BPF_F_* program load flags (e.g. BPF_F_XDP_HAS_FRAGS = 32).</summary>
    public uint Flags { get; init; }
    /// <summary>Initial verifier log size in bytes when a load fails; doubled while the kernel answers ENOSPC. Default 64 KiB.</summary>
    public int LogSize { get; init; } = 64 * 1024;
}

/// <summary>Information the kernel reports for a loaded program (struct bpf_prog_info).</summary>
/// <param name="Id">Kernel program id.</param>
/// <param name="Type">Program type.</param>
/// <param name="Name">Name as the kernel stores it.</param>
/// <param name="Tag">The program tag (SHA of the instructions) as 16 hex digits, as bpftool prints it.</param>
/// <param name="Jited">Whether the program was JIT-compiled.</param>
/// <param name="JitedSize">Bytes of JIT code.</param>
/// <param name="TranslatedSize">Bytes of translated (xlated) instructions.</param>
/// <param name="VerifiedInstructions">Instructions the verifier processed (5.16+).</param>
/// <param name="MapIds">Ids of the maps the program uses.</param>
/// <param name="BtfId">BTF object id (0 without BTF).</param>
/// <param name="GplCompatible">Whether the license is GPL-compatible.</param>
public sealed record BpfProgramInfo(uint Id, BpfProgramType Type, string Name, string Tag, bool Jited, uint JitedSize, uint TranslatedSize,
    uint VerifiedInstructions, IReadOnlyList<uint> MapIds, uint BtfId, bool GplCompatible);

/// <summary>Input and output of one BPF_PROG_TEST_RUN.</summary>
/// <param name="ReturnValue">The program's return value (XDP_PASS = 2, ...).</param>
/// <param name="DataOutLength">Bytes of packet written to the output span (the packet after the program).</param>
/// <param name="Duration">Average time per run as the kernel measured it, in whole 100 ns ticks (a
/// <see cref="TimeSpan"/> holds no less); see <see cref="AverageNanoseconds"/> for the exact figure.</param>
public readonly record struct BpfTestRunResult(uint ReturnValue, int DataOutLength, TimeSpan Duration)
{
    /// <summary>
    /// Average time per run in nanoseconds, as the kernel reports it (bpf_attr.test.duration: the
    /// total time of the repetitions divided by their number, net/bpf/test_run.c). An XDP program
    /// runs in tens of nanoseconds, below <see cref="Duration"/>'s resolution.
    /// </summary>
    public uint AverageNanoseconds { get; init; }
}

/// <summary>XDP context for a test run (struct xdp_md): the ingress interface and queue the packet appears on.</summary>
/// <param name="IngressIfindex">Interface index (0: none; when set the interface must exist in the caller's netns).</param>
/// <param name="RxQueueIndex">Receive queue index.</param>
public readonly record struct XdpTestContext(int IngressIfindex = 0, uint RxQueueIndex = 0);

/// <summary>A loaded BPF program.</summary>
public sealed unsafe class BpfProgram : IDisposable
{
    private readonly SafeFd _fd;

    internal BpfProgram(SafeFd fd, string name, BpfProgramType type, BpfAttachType? attach)
    {
        _fd = fd;
        Name = name;
        Type = type;
        ExpectedAttachType = attach;
    }

    /// <summary>Program name (the function name for programs from objects).</summary>
    public string Name { get; }

    /// <summary>Program type.</summary>
    public BpfProgramType Type { get; }

    /// <summary>Expected attach type given at load.</summary>
    public BpfAttachType? ExpectedAttachType { get; }

    /// <summary>The raw fd, valid until disposed.</summary>
    public int Fd => _fd.Fd;

    internal SafeFd Handle => _fd;

    /// <summary>Loads a program from instructions (for example from the assembler).</summary>
    /// <exception cref="BpfVerifierException">The verifier rejected it; the log is attached.</exception>
    /// <exception cref="BpfPermissionException">Missing CAP_BPF / CAP_NET_ADMIN.</exception>
    public static BpfProgram Load(BpfProgramType type, ReadOnlySpan<BpfInstruction> instructions, BpfProgramOptions? options = null)
    {
        options ??= new BpfProgramOptions();
        return LoadCore(new ProgramLoadRequest
        {
            Type = type, Name = options.Name ?? "prog", License = options.License, ExpectedAttachType = options.ExpectedAttachType,
            Flags = options.Flags, LogSize = options.LogSize, Instructions = instructions.ToArray(),
        });
    }

    internal static BpfProgram LoadCore(ProgramLoadRequest req)
    {
        byte[] license = Bpf.Utf8z(req.License);
        fixed (BpfInstruction* insns = req.Instructions)
        fixed (byte* lic = license)
        fixed (byte* fi = req.FuncInfo)
        fixed (byte* li = req.LineInfo)
        {
            var attr = new bpf_attr_prog_load
            {
                prog_type = (uint)req.Type, insn_cnt = (uint)req.Instructions.Length, insns = (ulong)insns, license = (ulong)lic,
                expected_attach_type = (uint)(req.ExpectedAttachType ?? 0), prog_flags = req.Flags,
            };
            Bpf.CopyName(attr.prog_name, req.Name);
            if (req.BtfFd >= 0 && req.FuncInfo is not null)
            {
                attr.prog_btf_fd = (uint)req.BtfFd;
                attr.func_info_rec_size = 8;
                attr.func_info = (ulong)fi;
                attr.func_info_cnt = (uint)(req.FuncInfo.Length / 8);
                if (req.LineInfo is { Length: > 0 })
                {
                    attr.line_info_rec_size = 16;
                    attr.line_info = (ulong)li;
                    attr.line_info_cnt = (uint)(req.LineInfo.Length / 16);
                }
            }
            // First attempt without a log, as libbpf does: verification is faster and most loads succeed.
            int fd = Bpf.Call(BpfCmd.ProgLoad, ref attr, out Errno e);
            for (int i = 0; fd < 0 && (e == Errno.EAGAIN || e == Errno.EINTR) && i < 5; i++)
                fd = Bpf.Call(BpfCmd.ProgLoad, ref attr, out e);
            if (fd < 0 && e == Errno.EPERM && ResourceLimits.RaiseMemlock())
                fd = Bpf.Call(BpfCmd.ProgLoad, ref attr, out e);
            if (fd >= 0)
            {
                XdpMetrics.ProgramsLoaded.Add(1);
                return new BpfProgram(new SafeFd(fd), req.Name, req.Type, req.ExpectedAttachType);
            }
            if (e == Errno.EPERM)
                throw BpfException.For(BpfCmd.ProgLoad, $"load {req.Type} program '{req.Name}'", e);
            if (e == Errno.EINVAL && !BpfFeatures.SupportsProgramType(req.Type))
                throw new BpfNotSupportedException($"program type {req.Type}", $"this kernel does not support BPF program type {req.Type} ({(int)req.Type})");
            // Retry with the verifier log, growing the buffer while the kernel says ENOSPC
            // (kernel/bpf/verifier.c bpf_vlog_finalize returns -ENOSPC on truncation).
            int size = Math.Max(64, req.LogSize);
            while (true)
            {
                byte[] log = new byte[size];
                fixed (byte* lp = log)
                {
                    attr.log_level = 1;
                    attr.log_size = (uint)size;
                    attr.log_buf = (ulong)lp;
                    attr.log_true_size = 0;
                    fd = Bpf.Call(BpfCmd.ProgLoad, ref attr, out e);
                }
                if (fd >= 0)
                {
                    XdpMetrics.ProgramsLoaded.Add(1);
                    return new BpfProgram(new SafeFd(fd), req.Name, req.Type, req.ExpectedAttachType);
                }
                if (e == Errno.ENOSPC && size < (1 << 30) / 4)
                {
                    size = attr.log_true_size > size ? (int)attr.log_true_size + 1 : size * 4;
                    continue;
                }
                int n = Array.IndexOf(log, (byte)0);
                string text = Encoding.UTF8.GetString(log, 0, n < 0 ? log.Length : n);
                XdpMetrics.VerifierFailures.Add(1);
                if (text.Length == 0)
                    throw BpfException.For(BpfCmd.ProgLoad, $"load {req.Type} program '{req.Name}'", e);
                int? insn = LastInstruction(text);
                string? src = insn is int i ? req.SourceLineOf?.Invoke(i) : null;
                src ??= LastSourceComment(text);
                throw new BpfVerifierException(req.Name, (int)e, text, insn, src);
            }
        }
    }

    private static readonly Regex InsnLine = new(@"^(\d+): \(", RegexOptions.Multiline | RegexOptions.CultureInvariant);

    /// <summary>The last instruction the verifier printed ("12: (71) r1 = ...").</summary>
    internal static int? LastInstruction(string log)
    {
        int? last = null;
        foreach (Match m in InsnLine.Matches(log))
            last = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
        return last;
    }

    /// <summary>The verifier echoes BTF line info as "; source text @ file:line"; the last one is where it stopped.</summary>
    internal static string? LastSourceComment(string log)
    {
        string? last = null;
        foreach (string line in log.Split('\n'))
            if (line.StartsWith("; ", StringComparison.Ordinal))
                last = line[2..].Trim();
        return last;
    }

    /// <summary>Opens a program pinned on bpffs.</summary>
    public static BpfProgram FromPin(string path) => FromFd(Bpf.GetPinned(path, "program"));

    /// <summary>Opens a program by kernel id.</summary>
    public static BpfProgram FromId(uint id) => FromFd(Bpf.GetFdById(BpfCmd.ProgGetFdById, id, "program"));

    private static BpfProgram FromFd(SafeFd fd)
    {
        var info = default(bpf_prog_info);
        Bpf.GetInfo(fd, ref info, "program info");
        return new BpfProgram(fd, Bpf.ReadName(info.name, 16), (BpfProgramType)info.type, null);
    }

    /// <summary>Pins the program at a bpffs path.</summary>
    public void Pin(string path) => Bpf.Pin(_fd, path);

    /// <summary>Kernel information (id, tag, name, JIT state, verified instruction count, maps).</summary>
    public BpfProgramInfo GetInfo()
    {
        var info = default(bpf_prog_info);
        Bpf.GetInfo(_fd, ref info, "program info");
        uint[] maps = new uint[info.nr_map_ids];
        if (maps.Length > 0)
        {
            fixed (uint* mp = maps)
            {
                var again = new bpf_prog_info { nr_map_ids = (uint)maps.Length, map_ids = (ulong)mp };
                Bpf.GetInfo(_fd, ref again, "program map ids");
            }
        }
        var tag = new StringBuilder(16);
        for (int i = 0; i < 8; i++)
            tag.Append(info.tag[i].ToString("x2", CultureInfo.InvariantCulture));
        return new BpfProgramInfo(info.id, (BpfProgramType)info.type, Bpf.ReadName(info.name, 16), tag.ToString(), info.jited_prog_len > 0,
            info.jited_prog_len, info.xlated_prog_len, info.verified_insns, maps, info.btf_id, (info.gpl_compatible & 1) != 0);
    }

    /// <summary>
    /// Runs the program in the kernel on <paramref name="dataIn"/> (BPF_PROG_TEST_RUN,
    /// net/bpf/test_run.c) <paramref name="repeat"/> times; the resulting packet goes to <paramref name="dataOut"/>.
    /// </summary>
    /// <exception cref="BpfException">The kernel refused the run; EINTR when a signal reached the
    /// calling thread during it (the kernel checks between repetitions; the .NET runtime signals
    /// threads to suspend them for a garbage collection), after which the repetitions already run
    /// have had their effects (maps updated) and the result is lost. Long runs are best split into
    /// calls of a few milliseconds each.</exception>
    public BpfTestRunResult TestRun(ReadOnlySpan<byte> dataIn, Span<byte> dataOut, int repeat = 1, XdpTestContext? xdpContext = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(repeat, 1);
        xdp_md ctx = default;
        fixed (byte* i = dataIn)
        fixed (byte* o = dataOut)
        {
            var attr = new bpf_attr_test_run
            {
                prog_fd = (uint)_fd.Fd, data_in = (ulong)i, data_size_in = (uint)dataIn.Length,
                data_out = dataOut.IsEmpty ? 0 : (ulong)o, data_size_out = (uint)dataOut.Length, repeat = (uint)repeat,
            };
            if (xdpContext is { } x)
            {
                // net/bpf/test_run.c xdp_convert_md_to_buff: data must be 0 and data_end the packet length.
                ctx = new xdp_md { data = 0, data_end = (uint)dataIn.Length, ingress_ifindex = (uint)x.IngressIfindex, rx_queue_index = x.RxQueueIndex };
                attr.ctx_in = (ulong)&ctx;
                attr.ctx_size_in = (uint)sizeof(xdp_md);
            }
            int r = Bpf.Call(BpfCmd.ProgTestRun, ref attr, out Errno e);
            if (r < 0 && e != Errno.ENOSPC)
                throw BpfException.For(BpfCmd.ProgTestRun, $"test run of '{Name}'", e);
            return new BpfTestRunResult(attr.retval, (int)Math.Min(attr.data_size_out, (uint)dataOut.Length), TimeSpan.FromTicks(attr.duration / 100))
            {
                AverageNanoseconds = attr.duration,
            };
        }
    }

    /// <summary>Attaches to a device's XDP hook through a bpf_link (pinnable; detached when the last reference closes).</summary>
    /// <param name="ifindex">Interface index.</param>
    /// <param name="mode">Generic (skb) or native (driver); default lets the kernel pick native when the driver has it.</param>
    /// <param name="netns">The network namespace of the device (iproute2 name or path); null for the caller's.
    /// The kernel resolves the ifindex in the calling thread's namespace, so the call runs on a thread inside it.</param>
    public BpfLink AttachXdp(int ifindex, XdpMode mode = XdpMode.Default, string? netns = null) =>
        netns is null ? BpfLink.CreateXdp(this, ifindex, mode) : Netcore.Threading.NetnsThread.Run(netns, () => BpfLink.CreateXdp(this, ifindex, mode));

    /// <summary>Attaches a tc (SchedCls) program to a device through TCX (Linux 6.6+), ingress or egress.</summary>
    /// <param name="ifindex">Interface index.</param>
    /// <param name="direction">Ingress or egress.</param>
    /// <param name="netns">The network namespace of the device (iproute2 name or path); null for the caller's.</param>
    public BpfLink AttachTcx(int ifindex, TcxDirection direction, string? netns = null) =>
        netns is null ? BpfLink.CreateTcx(this, ifindex, direction) : Netcore.Threading.NetnsThread.Run(netns, () => BpfLink.CreateTcx(this, ifindex, direction));

    /// <summary>Attaches an sk_lookup program to a network namespace (a path like /run/netns/NAME or /proc/self/ns/net).</summary>
    public BpfLink AttachSkLookup(string netnsPath) => BpfLink.CreateNetns(this, netnsPath, BpfAttachType.SkLookup);

    /// <summary>Closes the fd (the kernel frees the program when no link, pin or map holds it).</summary>
    public void Dispose() => _fd.Dispose();

    /// <inheritdoc />
    public override string ToString() => $"{Type} program '{Name}' (fd {Fd})";
}

/// <summary>Everything BPF_PROG_LOAD needs; built by <see cref="BpfProgram.Load"/> and the object loader.</summary>
internal sealed class ProgramLoadRequest
{
    public required BpfProgramType Type { get; init; }
    public required string Name { get; init; }
    public required string License { get; init; }
    public BpfAttachType? ExpectedAttachType { get; init; }
    public uint Flags { get; init; }
    public int LogSize { get; init; } = 64 * 1024;
    public required BpfInstruction[] Instructions { get; init; }
    public int BtfFd { get; init; } = -1;
    public byte[]? FuncInfo { get; init; }
    public byte[]? LineInfo { get; init; }
    /// <summary>Maps an instruction index to "file:line: source".</summary>
    public Func<int, string?>? SourceLineOf { get; init; }
}
