using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>An HTB class (net/sched/sch_htb.c): guaranteed rate and ceiling under a parent.</summary>
public sealed record HtbClassOptions
{
    /// <summary>Parent handle, e.g. 0x00010000 for "1:" (the qdisc) or a class "1:1".</summary>
    public required uint Parent { get; init; }

    /// <summary>This class id, e.g. 0x00010010 for "1:10".</summary>
    public required uint ClassId { get; init; }

    /// <summary>Guaranteed rate in bytes per second.</summary>
    public required ulong RateBytesPerSecond { get; init; }

    /// <summary>Ceiling in bytes per second; defaults to the rate.</summary>
    public ulong? CeilBytesPerSecond { get; init; }

    /// <summary>Burst in bytes at the rate (and ceil). Default 16 KiB.</summary>
    public uint BurstBytes { get; init; } = 16 * 1024;

    /// <summary>Priority (lower first). Default 0.</summary>
    public uint Priority { get; init; }
}

/// <summary>A traffic class as dumped by RTM_GETTCLASS (`tc class show`).</summary>
public sealed record TcClass
{
    /// <summary>The link index.</summary>
    public int IfIndex { get; init; }

    /// <summary>The qdisc kind the class belongs to ("htb", ...).</summary>
    public string Kind { get; init; } = "";

    /// <summary>tcm_handle: the class id, e.g. 0x00010010 for "1:10".</summary>
    public uint ClassId { get; init; }

    /// <summary>tcm_parent: the parent class, or TC_H_ROOT (0xFFFFFFFF) for a class under the qdisc itself.</summary>
    public uint Parent { get; init; }

    /// <summary>tcm_info: the handle of the class's leaf qdisc (0 for an inner class).</summary>
    public uint LeafQdisc { get; init; }

    /// <summary>The HTB parameters when <see cref="Kind"/> is "htb".</summary>
    public HtbClassInfo? Htb { get; init; }
}

/// <summary>An HTB class's parameters as the kernel reports them (net/sched/sch_htb.c htb_dump_class).</summary>
public sealed record HtbClassInfo
{
    /// <summary>Guaranteed rate in bytes per second (TCA_HTB_RATE64 when the rate does not fit 32 bits).</summary>
    public ulong RateBytesPerSecond { get; init; }

    /// <summary>Ceiling in bytes per second (TCA_HTB_CEIL64 when it does not fit 32 bits).</summary>
    public ulong CeilBytesPerSecond { get; init; }

    /// <summary>Burst at the rate in bytes (the buffer time converted back at the rate, as tc shows it).</summary>
    public ulong BurstBytes { get; init; }

    /// <summary>Burst at the ceiling in bytes.</summary>
    public ulong CeilBurstBytes { get; init; }

    /// <summary>Bytes dequeued per round (quantum; derived from rate / r2q when not set).</summary>
    public uint Quantum { get; init; }

    /// <summary>Priority (lower first).</summary>
    public uint Priority { get; init; }

    /// <summary>Level in the class tree: 0 for a leaf; inner classes count down from TC_HTB_MAXDEPTH - 1 = 7 at the top (sch_htb.c).</summary>
    public uint Level { get; init; }
}

[StructLayout(LayoutKind.Sequential)]
internal struct tc_ratespec
{
    public byte cell_log;
    public byte linklayer;
    public ushort overhead;
    public short cell_align;
    public ushort mpu;
    public uint rate;
}

[StructLayout(LayoutKind.Sequential)]
internal struct tc_htb_opt
{
    public tc_ratespec rate;
    public tc_ratespec ceil;
    public uint buffer;
    public uint cbuffer;
    public uint quantum;
    public uint level;
    public uint prio;
}

internal static class HtbCodec
{
    public const ushort RTM_NEWTCLASS = 40, RTM_GETTCLASS = 42;
    private const ushort TCA_HTB_PARMS = 1, TCA_HTB_INIT = 2, TCA_HTB_RATE64 = 6, TCA_HTB_CEIL64 = 7;
    private const byte TC_LINKLAYER_ETHERNET = 1;

    public static void WriteQdisc(NetlinkWriter w, int ifindex, uint handle, uint defaultClass)
    {
        w.Struct(new tcmsg { tcm_ifindex = ifindex, tcm_handle = handle, tcm_parent = Nl.TC_H_ROOT });
        w.String(Nl.TCA_KIND, "htb");
        int o = w.BeginNested(Nl.TCA_OPTIONS);
        // net/sched/sch_htb.c htb_init: version 3 (TC_HTB_PROTOVER), rate2quantum 10 like tc.
        w.Struct(new tc_htb_glob { version = 3, rate2quantum = 10, defcls = defaultClass & 0xFFFF }, TCA_HTB_INIT);
        w.EndNested(o);
    }

    /// <summary>Parses an RTM_NEWTCLASS message (HTB options decoded; other kinds keep only the header fields).</summary>
    public static bool TryParseClass(in NetlinkMessage m, out TcClass c)
    {
        c = null!;
        if (m.Type != RTM_NEWTCLASS)
            return false;
        tcmsg h = m.Header<tcmsg>();
        string kind = "";
        HtbClassInfo? htb = null;
        var a = m.Attributes(Unsafe.SizeOf<tcmsg>());
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            if (t == Nl.TCA_KIND)
                kind = Attr.String(v);
            else if (t == Nl.TCA_OPTIONS && kind == "htb")
                htb = ParseHtbOptions(v);
        }
        c = new TcClass { IfIndex = h.tcm_ifindex, Kind = kind, ClassId = h.tcm_handle, Parent = h.tcm_parent, LeafQdisc = h.tcm_info, Htb = htb };
        return true;
    }

    private static HtbClassInfo? ParseHtbOptions(ReadOnlySpan<byte> v)
    {
        tc_htb_opt? parms = null;
        ulong? rate64 = null, ceil64 = null;
        var o = new AttributeReader(v);
        while (o.TryRead(out ushort t, out ReadOnlySpan<byte> x))
        {
            switch (t)
            {
                case TCA_HTB_PARMS:
                    // A longer struct from a newer kernel is accepted; a shorter one is malformed.
                    if (x.Length < Unsafe.SizeOf<tc_htb_opt>())
                        NetlinkFormatException.Throw($"TCA_HTB_PARMS of {x.Length} bytes, {Unsafe.SizeOf<tc_htb_opt>()} needed");
                    parms = MemoryMarshal.Read<tc_htb_opt>(x);
                    break;
                case TCA_HTB_RATE64: rate64 = Attr.U64(x); break;
                case TCA_HTB_CEIL64: ceil64 = Attr.U64(x); break;
                default: break;
            }
        }
        if (parms is not tc_htb_opt p)
            return null;
        ulong rate = rate64 ?? p.rate.rate, ceil = ceil64 ?? p.ceil.rate;
        return new HtbClassInfo
        {
            RateBytesPerSecond = rate,
            CeilBytesPerSecond = ceil,
            BurstBytes = Bytes(p.buffer, rate),
            CeilBurstBytes = Bytes(p.cbuffer, ceil),
            Quantum = p.quantum,
            Priority = p.prio,
            Level = p.level,
        };
    }

    // The inverse of Ticks: bytes sent at the rate during buffer ticks of 64 ns.
    private static ulong Bytes(uint ticks, ulong rate) => (ulong)Math.Round(ticks * 64.0 * rate / 1_000_000_000.0);

    // PSCHED ticks are 64 ns (include/net/pkt_sched.h PSCHED_SHIFT 6); buffer is the time to send the burst at the rate.
    private static uint Ticks(uint burst, ulong rate) => (uint)Math.Min(uint.MaxValue, burst * 1_000_000_000.0 / rate / 64.0);

    public static void WriteClass(NetlinkWriter w, int ifindex, HtbClassOptions c)
    {
        ulong ceil = c.CeilBytesPerSecond ?? c.RateBytesPerSecond;
        // sch_htb.c htb_change_class: rate and ceil must be non-zero.
        if (c.RateBytesPerSecond == 0 || ceil == 0)
            throw new ArgumentOutOfRangeException(nameof(c), "HTB rate and ceil must be non-zero");
        w.Struct(new tcmsg { tcm_ifindex = ifindex, tcm_handle = c.ClassId, tcm_parent = c.Parent });
        w.String(Nl.TCA_KIND, "htb");
        int o = w.BeginNested(Nl.TCA_OPTIONS);
        // A linklayer other than UNAWARE tells the kernel no rate table follows (TCA_HTB_RTAB/CTAB optional).
        w.Struct(new tc_htb_opt
        {
            rate = new tc_ratespec { linklayer = TC_LINKLAYER_ETHERNET, rate = (uint)Math.Min(c.RateBytesPerSecond, uint.MaxValue) },
            ceil = new tc_ratespec { linklayer = TC_LINKLAYER_ETHERNET, rate = (uint)Math.Min(ceil, uint.MaxValue) },
            buffer = Ticks(c.BurstBytes, c.RateBytesPerSecond),
            cbuffer = Ticks(c.BurstBytes, ceil),
            prio = c.Priority,
        }, TCA_HTB_PARMS);
        if (c.RateBytesPerSecond >= uint.MaxValue)
            w.U64(TCA_HTB_RATE64, c.RateBytesPerSecond);
        if (ceil >= uint.MaxValue)
            w.U64(TCA_HTB_CEIL64, ceil);
        w.EndNested(o);
    }
}

public sealed partial class NetlinkClient
{
    private const ushort RTM_NEWTCLASS = HtbCodec.RTM_NEWTCLASS;

    /// <summary>Adds (or replaces) an HTB root qdisc with <paramref name="handle"/> (e.g. 0x00010000 = "1:") and a default class minor.</summary>
    public ValueTask AddHtbQdiscAsync(int ifindex, uint handle = 0x00010000, uint defaultClass = 0, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_NEWQDISC, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, $"RTM_NEWQDISC #{ifindex} htb", w => HtbCodec.WriteQdisc(w, ifindex, handle, defaultClass));
        return ValueTask.CompletedTask;
    }

    /// <summary>Adds (or replaces) an HTB class.</summary>
    public ValueTask AddHtbClassAsync(int ifindex, HtbClassOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        cancellationToken.ThrowIfCancellationRequested();
        Ack(RTM_NEWTCLASS, Nl.NLM_F_CREATE | Nl.NLM_F_REPLACE, $"RTM_NEWTCLASS #{ifindex} htb {options.ClassId:x}", w => HtbCodec.WriteClass(w, ifindex, options));
        return ValueTask.CompletedTask;
    }

    /// <summary>Deletes a traffic class (`tc class del dev X classid C`).</summary>
    public ValueTask DeleteTcClassAsync(int ifindex, uint classId, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        // net/sched/sch_api.c tc_ctl_tclass: RTM_DELTCLASS (41) finds the class by tcm_handle.
        Ack(41, 0, $"RTM_DELTCLASS #{ifindex} {classId:x}", w => w.Struct(new tcmsg { tcm_ifindex = ifindex, tcm_handle = classId }));
        return ValueTask.CompletedTask;
    }

    /// <summary>Traffic classes of a link (RTM_GETTCLASS dump, `tc class show dev X`), HTB parameters decoded.</summary>
    public IAsyncEnumerable<TcClass> GetTcClassesAsync(int ifindex, CancellationToken cancellationToken = default) =>
        // net/sched/sch_api.c tc_dump_tclass: the dump walks the qdiscs of tcm_ifindex.
        DumpAsync<TcClass>(HtbCodec.RTM_GETTCLASS, $"RTM_GETTCLASS #{ifindex}", w => w.Struct(new tcmsg { tcm_ifindex = ifindex }),
            (in NetlinkMessage m, out TcClass c) => HtbCodec.TryParseClass(m, out c) && c.IfIndex == ifindex, cancellationToken);
}
