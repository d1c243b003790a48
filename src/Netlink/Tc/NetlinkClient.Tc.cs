using System.Runtime.InteropServices;
using Netcore.Interop;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>Which clsact hook a tc filter sits on.</summary>
public enum TcDirection
{
    /// <summary>Ingress (TC_H_MIN_INGRESS).</summary>
    Ingress,
    /// <summary>Egress (TC_H_MIN_EGRESS).</summary>
    Egress,
}

/// <summary>Options of a tc bpf filter (net/sched/cls_bpf.c).</summary>
public sealed record TcBpfFilterOptions
{
    /// <summary>TCA_BPF_NAME: a label shown by `tc filter show`. Default "netcore".</summary>
    public string Name { get; init; } = "netcore";

    /// <summary>TCA_BPF_FLAG_ACT_DIRECT: the program's return value is the tc action. Default true.</summary>
    public bool DirectAction { get; init; } = true;

    /// <summary>Filter priority (upper 16 bits of tcm_info). Default 1.</summary>
    public ushort Priority { get; init; } = 1;

    /// <summary>Filter handle. Default 1.</summary>
    public uint Handle { get; init; } = 1;

    /// <summary>Ethernet protocol matched (host order; ETH_P_ALL = 3 by default).</summary>
    public ushort Protocol { get; init; } = 3;

    /// <summary>Replace an existing filter with the same priority and handle instead of failing with EEXIST. Default true.</summary>
    public bool Replace { get; init; } = true;
}

/// <summary>A tc filter as dumped by RTM_GETTFILTER.</summary>
public sealed record TcFilter
{
    /// <summary>The classifier kind ("bpf", "u32", ...).</summary>
    public string Kind { get; init; } = "";

    /// <summary>Priority.</summary>
    public ushort Priority { get; init; }

    /// <summary>Protocol (host order).</summary>
    public ushort Protocol { get; init; }

    /// <summary>Handle.</summary>
    public uint Handle { get; init; }

    /// <summary>TCA_BPF_NAME for bpf filters.</summary>
    public string? BpfName { get; init; }

    /// <summary>TCA_BPF_ID: the program id for bpf filters.</summary>
    public uint? BpfProgramId { get; init; }

    /// <summary>Whether direct-action is set (bpf filters).</summary>
    public bool DirectAction { get; init; }
}

/// <summary>A qdisc as dumped by RTM_GETQDISC.</summary>
/// <param name="IfIndex">The link index.</param>
/// <param name="Kind">"clsact", "netem", "htb", "noqueue", ...</param>
/// <param name="Handle">tcm_handle.</param>
/// <param name="Parent">tcm_parent.</param>
public sealed record TcQdisc(int IfIndex, string Kind, uint Handle, uint Parent);

/// <summary>netem fault injection (net/sched/sch_netem.c).</summary>
public sealed record NetemOptions
{
    /// <summary>Added delay (TCA_NETEM_LATENCY64, ns).</summary>
    public TimeSpan Delay { get; init; }

    /// <summary>Delay jitter (TCA_NETEM_JITTER64, ns).</summary>
    public TimeSpan Jitter { get; init; }

    /// <summary>Random loss in percent (0..100).</summary>
    public double LossPercent { get; init; }

    /// <summary>Queue limit in packets. Default 1000.</summary>
    public uint Limit { get; init; } = 1000;
}

public sealed partial class NetlinkClient
{
    /// <summary>Adds the clsact qdisc (`tc qdisc add dev X clsact`); an existing one is kept when <paramref name="ignoreExisting"/>.</summary>
    public ValueTask AddClsactQdiscAsync(int ifindex, bool ignoreExisting = true, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        try
        {
            Ack(Nl.RTM_NEWQDISC, Nl.NLM_F_CREATE | Nl.NLM_F_EXCL, $"RTM_NEWQDISC #{ifindex} clsact", w =>
            {
                // net/sched/sch_ingress.c: clsact lives at TC_H_CLSACT with handle ffff:0.
                w.Struct(new tcmsg { tcm_ifindex = ifindex, tcm_handle = 0xFFFF0000, tcm_parent = Nl.TC_H_CLSACT });
                w.String(Nl.TCA_KIND, "clsact");
            });
        }
        catch (NetlinkException e) when (ignoreExisting && e.NativeErrorCode == (int)Errno.EEXIST)
        {
        }
        catch (NetlinkException e) when (IsUnknownQdisc(e))
        {
            throw new NetlinkKernelLacksException($"RTM_NEWQDISC #{ifindex} clsact", "qdisc 'clsact'", e.NativeErrorCode, e.ExtendedAckMessage);
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>Deletes the clsact qdisc and with it every filter on it.</summary>
    public ValueTask DeleteClsactQdiscAsync(int ifindex, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_DELQDISC, 0, $"RTM_DELQDISC #{ifindex} clsact", w =>
        {
            w.Struct(new tcmsg { tcm_ifindex = ifindex, tcm_handle = 0xFFFF0000, tcm_parent = Nl.TC_H_CLSACT });
            w.String(Nl.TCA_KIND, "clsact");
        });
        return ValueTask.CompletedTask;
    }

    /// <summary>Adds a netem root qdisc (delay, jitter, loss) for fault injection; replaces the root qdisc.</summary>
    public ValueTask AddNetemQdiscAsync(int ifindex, NetemOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        cancellationToken.ThrowIfCancellationRequested();
        if (options.LossPercent is < 0 or > 100)
            throw new ArgumentOutOfRangeException(nameof(options), "LossPercent is 0..100");
        string op = $"RTM_NEWQDISC #{ifindex} netem";
        try
        {
            Ack(Nl.RTM_NEWQDISC, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, op, w => TcCodec.WriteNetem(w, ifindex, options));
        }
        catch (NetlinkException e) when (IsUnknownQdisc(e))
        {
            throw new NetlinkKernelLacksException(op, "qdisc 'netem' (CONFIG_NET_SCH_NETEM)", e.NativeErrorCode, e.ExtendedAckMessage);
        }
        return ValueTask.CompletedTask;
    }

    // net/sched/sch_api.c qdisc_create: no Qdisc_ops for the kind -> "Specified qdisc kind is unknown", ENOENT.
    private static bool IsUnknownQdisc(NetlinkException e) =>
        e.NativeErrorCode == (int)Errno.ENOENT && e.ExtendedAckMessage?.Contains("qdisc kind is unknown", StringComparison.Ordinal) == true;

    /// <summary>Removes the root qdisc (back to the default).</summary>
    public ValueTask DeleteRootQdiscAsync(int ifindex, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_DELQDISC, 0, $"RTM_DELQDISC #{ifindex} root", w => w.Struct(new tcmsg { tcm_ifindex = ifindex, tcm_parent = Nl.TC_H_ROOT }));
        return ValueTask.CompletedTask;
    }

    /// <summary>Qdiscs of a link (RTM_GETQDISC dump, filtered by the kernel to <paramref name="ifindex"/> with strict checking).</summary>
    public IAsyncEnumerable<TcQdisc> GetQdiscsAsync(int ifindex, CancellationToken cancellationToken = default) =>
        DumpAsync<TcQdisc>(Nl.RTM_GETQDISC, $"RTM_GETQDISC #{ifindex}", w => w.Struct(new tcmsg { tcm_ifindex = ifindex }),
            (in NetlinkMessage m, out TcQdisc q) =>
            {
                tcmsg h = m.Header<tcmsg>();
                string kind = "";
                var a = m.Attributes(System.Runtime.CompilerServices.Unsafe.SizeOf<tcmsg>());
                while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
                    if (t == Nl.TCA_KIND) kind = Attr.String(v);
                q = new TcQdisc(h.tcm_ifindex, kind, h.tcm_handle, h.tcm_parent);
                return m.Type == Nl.RTM_NEWQDISC && h.tcm_ifindex == ifindex;
            }, cancellationToken);

    /// <summary>Attaches a BPF program (SCHED_CLS) as a cls_bpf filter on the clsact ingress or egress hook.</summary>
    public ValueTask AttachBpfFilterAsync(int ifindex, TcDirection direction, SafeHandle program, TcBpfFilterOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(program);
        bool added = false;
        try
        {
            program.DangerousAddRef(ref added);
            return AttachBpfFilterAsync(ifindex, direction, (int)program.DangerousGetHandle(), options, cancellationToken);
        }
        finally
        {
            if (added) program.DangerousRelease();
        }
    }

    /// <summary>Attaches a BPF program given as a raw fd as a cls_bpf filter.</summary>
    public ValueTask AttachBpfFilterAsync(int ifindex, TcDirection direction, int programFd, TcBpfFilterOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        TcBpfFilterOptions o = options ?? new TcBpfFilterOptions();
        ushort flags = (ushort)(Nl.NLM_F_CREATE | (o.Replace ? Nl.NLM_F_REPLACE : Nl.NLM_F_EXCL));
        Ack(Nl.RTM_NEWTFILTER, flags, $"RTM_NEWTFILTER #{ifindex} {direction} bpf fd {programFd}",
            w => TcCodec.WriteBpfFilter(w, ifindex, direction, programFd, o));
        return ValueTask.CompletedTask;
    }

    /// <summary>Deletes the filter with <paramref name="priority"/> and <paramref name="handle"/> from the hook.</summary>
    public ValueTask DeleteBpfFilterAsync(int ifindex, TcDirection direction, ushort priority = 1, uint handle = 1, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_DELTFILTER, 0, $"RTM_DELTFILTER #{ifindex} {direction} prio {priority}", w =>
        {
            w.Struct(new tcmsg
            {
                tcm_ifindex = ifindex,
                tcm_parent = TcCodec.Parent(direction),
                tcm_handle = handle,
                tcm_info = (uint)priority << 16 | TcCodec.Htons(3),
            });
            w.String(Nl.TCA_KIND, "bpf");
        });
        return ValueTask.CompletedTask;
    }

    /// <summary>Filters on a clsact hook (RTM_GETTFILTER dump).</summary>
    public IAsyncEnumerable<TcFilter> GetFiltersAsync(int ifindex, TcDirection direction, CancellationToken cancellationToken = default) =>
        DumpAsync<TcFilter>(Nl.RTM_GETTFILTER, $"RTM_GETTFILTER #{ifindex} {direction}",
            w => w.Struct(new tcmsg { tcm_ifindex = ifindex, tcm_parent = TcCodec.Parent(direction) }),
            TcCodec.TryParseFilter, cancellationToken);
}

internal static class TcCodec
{
    public static uint Htons(ushort v) => (uint)((v >> 8) | ((v & 0xFF) << 8));

    // linux/pkt_sched.h TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS/EGRESS)
    public static uint Parent(TcDirection d) => (Nl.TC_H_CLSACT & 0xFFFF0000) | (d == TcDirection.Ingress ? Nl.TC_H_MIN_INGRESS : Nl.TC_H_MIN_EGRESS);

    public static void WriteBpfFilter(NetlinkWriter w, int ifindex, TcDirection direction, int programFd, TcBpfFilterOptions o)
    {
        if (o.Priority == 0)
            throw new ArgumentException("a filter priority is 1..65535 (0 lets the kernel choose, which breaks replace/delete)", nameof(o));
        w.Struct(new tcmsg
        {
            tcm_ifindex = ifindex,
            tcm_parent = Parent(direction),
            tcm_handle = o.Handle,
            // net/sched/cls_api.c: tcm_info = TC_H_MAKE(prio << 16, protocol in network order)
            tcm_info = (uint)o.Priority << 16 | Htons(o.Protocol),
        });
        w.String(Nl.TCA_KIND, "bpf");
        int opts = w.BeginNested(Nl.TCA_OPTIONS);
        w.U32(Nl.TCA_BPF_FD, (uint)programFd);
        w.String(Nl.TCA_BPF_NAME, o.Name);
        if (o.DirectAction)
            w.U32(Nl.TCA_BPF_FLAGS, Nl.TCA_BPF_FLAG_ACT_DIRECT);
        w.EndNested(opts);
    }

    public static void WriteNetem(NetlinkWriter w, int ifindex, NetemOptions o)
    {
        w.Struct(new tcmsg { tcm_ifindex = ifindex, tcm_parent = Nl.TC_H_ROOT });
        w.String(Nl.TCA_KIND, "netem");
        // net/sched/sch_netem.c netem_change: TCA_OPTIONS is struct tc_netem_qopt followed by attributes
        // (nla_parse_nested_compat), so it is written as a raw attribute, not a nest.
        int opts = w.BeginRaw(Nl.TCA_OPTIONS);
        w.Struct(new tc_netem_qopt
        {
            limit = o.Limit,
            loss = (uint)Math.Min(uint.MaxValue, Math.Round(o.LossPercent / 100.0 * uint.MaxValue)),
        });
        w.U64(10 /* TCA_NETEM_LATENCY64 */, (ulong)(o.Delay.Ticks * 100));
        w.U64(11 /* TCA_NETEM_JITTER64 */, (ulong)(o.Jitter.Ticks * 100));
        w.EndNested(opts);
    }

    public static bool TryParseFilter(in NetlinkMessage m, out TcFilter f)
    {
        f = null!;
        if (m.Type != Nl.RTM_NEWTFILTER)
            return false;
        tcmsg h = m.Header<tcmsg>();
        string kind = "";
        string? name = null;
        uint? id = null;
        bool da = false;
        var a = m.Attributes(System.Runtime.CompilerServices.Unsafe.SizeOf<tcmsg>());
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            if (t == Nl.TCA_KIND)
                kind = Attr.String(v);
            else if (t == Nl.TCA_OPTIONS && kind == "bpf")
            {
                var o = new AttributeReader(v);
                while (o.TryRead(out ushort ot, out ReadOnlySpan<byte> ov))
                {
                    if (ot == Nl.TCA_BPF_NAME) name = Attr.String(ov);
                    else if (ot == Nl.TCA_BPF_ID) id = Attr.U32(ov);
                    else if (ot == Nl.TCA_BPF_FLAGS) da = (Attr.U32(ov) & Nl.TCA_BPF_FLAG_ACT_DIRECT) != 0;
                }
            }
        }
        // A dump lists one message per chain/priority header with handle 0 before the filters: skip those.
        if (h.tcm_handle == 0)
            return false;
        f = new TcFilter
        {
            Kind = kind,
            Priority = (ushort)(h.tcm_info >> 16),
            Protocol = (ushort)Htons((ushort)(h.tcm_info & 0xFFFF)),
            Handle = h.tcm_handle,
            BpfName = name,
            BpfProgramId = id,
            DirectAction = da,
        };
        return true;
    }
}
