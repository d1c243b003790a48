using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Netcore.Interop;
using Netcore.Xdp.Syscall;

namespace Netcore.Xdp;

/// <summary>
/// Probes what the running kernel supports by asking it (the approach of libbpf's
/// libbpf_probe_bpf_* and cilium/ebpf's internal/feature): a minimal program of each type,
/// a small map of each type, a program calling each helper. Results are cached per process.
/// </summary>
public static unsafe class BpfFeatures
{
    private static readonly ConcurrentDictionary<string, bool> Cache = new(StringComparer.Ordinal);

    /// <summary>True when the kernel loads a trivial program of <paramref name="type"/>.</summary>
    public static bool SupportsProgramType(BpfProgramType type) =>
        Cache.GetOrAdd("prog:" + (int)type, k => TryLoad(type, [new BpfInstruction(0xb7, 0, 0, 0, 0), new BpfInstruction(0x95, 0, 0, 0, 0)], out _) != Errno.EINVAL);

    /// <summary>True when the kernel creates a map of <paramref name="type"/>.</summary>
    public static bool SupportsMapType(BpfMapType type) => Cache.GetOrAdd("map:" + (int)type, k =>
    {
        uint key = 4, value = 4, max = 1, flags = 0, inner = 0;
        SafeFd? innerFd = null;
        switch (type)
        {
            case BpfMapType.LpmTrie: key = 8; flags = (uint)BpfMapFlags.NoPrealloc; break;
            case BpfMapType.RingBuf: key = value = 0; max = (uint)Environment.SystemPageSize; break;
            case BpfMapType.Queue or BpfMapType.Stack or BpfMapType.BloomFilter: key = 0; break;
            case BpfMapType.SkStorage: flags = (uint)BpfMapFlags.NoPrealloc; return true; // needs BTF; present since 5.2
            case BpfMapType.ArrayOfMaps or BpfMapType.HashOfMaps:
                var ia = new bpf_attr_map_create { map_type = (uint)BpfMapType.Array, key_size = 4, value_size = 4, max_entries = 1 };
                int ifd = Bpf.Call(BpfCmd.MapCreate, ref ia, out _);
                if (ifd < 0) return false;
                innerFd = new SafeFd(ifd);
                inner = (uint)ifd;
                break;
            case BpfMapType.DevMap or BpfMapType.DevMapHash or BpfMapType.XskMap or BpfMapType.SockMap or BpfMapType.SockHash or BpfMapType.ReuseportSockArray:
                break;
            case BpfMapType.CpuMap: break;
        }
        var attr = new bpf_attr_map_create { map_type = (uint)type, key_size = key, value_size = value, max_entries = max, map_flags = flags, inner_map_fd = inner };
        int fd = Bpf.Call(BpfCmd.MapCreate, ref attr, out Errno e);
        innerFd?.Dispose();
        if (fd >= 0)
        {
            Libc.close(fd);
            return true;
        }
        return e != Errno.EINVAL;
    });

    /// <summary>
    /// True when programs of <paramref name="type"/> may call helper <paramref name="helperId"/>
    /// (see BpfHelper for ids). The verifier answers "unknown func" or "program of this type cannot use helper".
    /// </summary>
    public static bool SupportsHelper(BpfProgramType type, int helperId) => Cache.GetOrAdd($"helper:{(int)type}:{helperId}", k =>
    {
        BpfInstruction[] insns = [new BpfInstruction(0x85, 0, 0, 0, helperId), new BpfInstruction(0xb7, 0, 0, 0, 0), new BpfInstruction(0x95, 0, 0, 0, 0)];
        var e = TryLoad(type, insns, out string log);
        if (e == Errno.None)
            return true;
        return !(log.Contains("invalid func ", StringComparison.Ordinal) || log.Contains("unknown func ", StringComparison.Ordinal)
            || log.Contains("cannot call GPL-restricted", StringComparison.Ordinal) || log.Contains("program of this type cannot use helper", StringComparison.Ordinal));
    });

    /// <summary>True when TCX attach (BPF_TCX_INGRESS/EGRESS, Linux 6.6) exists.</summary>
    public static bool SupportsTcx() => Cache.GetOrAdd("tcx", k =>
    {
        int prog = RawLoad(BpfProgramType.SchedCls, [new BpfInstruction(0xb7, 0, 0, 0, 0), new BpfInstruction(0x95, 0, 0, 0, 0)], null, 0, out _);
        if (prog < 0)
            return false;
        try
        {
            // ifindex 0 names no device: a kernel that knows TCX answers ENODEV/ENXIO, one that does not answers EINVAL.
            var attr = new bpf_attr_link_create { prog_fd = (uint)prog, target_fd = 0, attach_type = (uint)BpfAttachType.TcxIngress };
            int fd = Bpf.Call(BpfCmd.LinkCreate, ref attr, out Errno e);
            if (fd >= 0)
                Libc.close(fd);
            return e != Errno.EINVAL;
        }
        finally
        {
            Libc.close(prog);
        }
    });

    /// <summary>Throws <see cref="BpfNotSupportedException"/> naming the program type when the kernel lacks it.</summary>
    public static void RequireProgramType(BpfProgramType type)
    {
        if (!SupportsProgramType(type))
            throw new BpfNotSupportedException($"program type {type}", $"the running kernel ({Environment.OSVersion.Version}) does not support BPF program type {type}");
    }

    /// <summary>Throws <see cref="BpfNotSupportedException"/> naming the map type when the kernel lacks it.</summary>
    public static void RequireMapType(BpfMapType type)
    {
        if (!SupportsMapType(type))
            throw new BpfNotSupportedException($"map type {type}", $"the running kernel ({Environment.OSVersion.Version}) does not support BPF map type {type}");
    }

    /// <summary>Throws <see cref="BpfNotSupportedException"/> naming the helper when programs of the type cannot call it.</summary>
    public static void RequireHelper(BpfProgramType type, int helperId)
    {
        if (!SupportsHelper(type, helperId))
            throw new BpfNotSupportedException($"helper {helperId} for {type}", $"{type} programs cannot call BPF helper {helperId} on this kernel");
    }

    private static Errno TryLoad(BpfProgramType type, BpfInstruction[] insns, out string log)
    {
        byte[] buf = new byte[16 * 1024];
        int fd;
        Errno e;
        fixed (byte* b = buf)
            fd = RawLoad(type, insns, b, buf.Length, out e);
        int n = Array.IndexOf(buf, (byte)0);
        log = System.Text.Encoding.UTF8.GetString(buf, 0, n < 0 ? buf.Length : n);
        if (fd >= 0)
        {
            Libc.close(fd);
            return Errno.None;
        }
        return e;
    }

    private static int RawLoad(BpfProgramType type, BpfInstruction[] insns, byte* log, int logSize, out Errno e)
    {
        byte[] lic = "GPL\0"u8.ToArray();
        fixed (BpfInstruction* p = insns)
        fixed (byte* l = lic)
        {
            var attr = new bpf_attr_prog_load
            {
                prog_type = (uint)type, insn_cnt = (uint)insns.Length, insns = (ulong)p, license = (ulong)l,
                log_level = log == null ? 0u : 1u, log_buf = (ulong)log, log_size = (uint)logSize,
                expected_attach_type = type == BpfProgramType.SkLookup ? (uint)BpfAttachType.SkLookup : 0,
            };
            return Bpf.Call(BpfCmd.ProgLoad, ref attr, out e);
        }
    }
}

/// <summary>Metrics of the package (Meter "Netcore.Xdp").</summary>
internal static class XdpMetrics
{
    public static readonly Meter Meter = new("Netcore.Xdp");
    public static readonly Counter<long> ProgramsLoaded = Meter.CreateCounter<long>("netcore.xdp.programs_loaded", description: "BPF programs loaded");
    public static readonly Counter<long> MapsCreated = Meter.CreateCounter<long>("netcore.xdp.maps_created", description: "BPF maps created");
    public static readonly Counter<long> VerifierFailures = Meter.CreateCounter<long>("netcore.xdp.verifier_failures", description: "programs the verifier rejected");
}
