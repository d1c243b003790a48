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
    private const ushort RTM_NEWTCLASS = 40;

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
}
