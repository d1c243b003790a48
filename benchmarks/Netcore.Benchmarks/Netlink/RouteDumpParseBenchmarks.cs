using System.Buffers.Binary;
using System.Net;
using BenchmarkDotNet.Attributes;
using Netcore.Netlink;
using Netcore.Netlink.Core;

namespace Netcore.Benchmarks.Netlink;

/// <summary>
/// Parsing a 100k-route dump buffer: the raw zero-copy reader (0 bytes allocated) and typed
/// <see cref="Route"/> objects (one allocation per route). Results are per route
/// (OperationsPerInvoke). The buffer is laid out like the kernel's RTM_NEWROUTE dump replies
/// (rtmsg, RTA_TABLE, RTA_DST, RTA_OIF, some with RTA_GATEWAY and RTA_PRIORITY, NLM_F_MULTI,
/// datagrams of up to 32 KiB) or, with NETCORE_ROUTE_DUMP=file, a dump captured by the
/// `netlink-capture` tool.
/// </summary>
[MemoryDiagnoser]
public class RouteDumpParseBenchmarks
{
    private const int Routes = 100_000;
    private List<byte[]> _datagrams = null!;

    [GlobalSetup]
    public void Setup() => _datagrams = Environment.GetEnvironmentVariable("NETCORE_ROUTE_DUMP") is { Length: > 0 } file
        ? NetlinkRouteTools.ReadCapture(file)
        : Synthesize(Routes);

    internal static List<byte[]> Synthesize(int count)
    {
        var list = new List<byte[]>();
        var current = new List<byte>(33 * 1024);
        using var w = new NetlinkWriter();
        for (int i = 0; i <= count; i++)
        {
            w.Reset();
            if (i == count)
            {
                w.BeginMessage(Nl.NLMSG_DONE, Nl.NLM_F_MULTI, 1, 4242);
                w.Reserve(4);
            }
            else
            {
                w.BeginMessage(Nl.RTM_NEWROUTE, Nl.NLM_F_MULTI, 1, 4242);
                RouteCodec.Write(w, new Route
                {
                    Destination = new IPNetwork(new IPAddress(BinaryPrimitives.ReverseEndianness((uint)(0x0A000000 + i))), 32),
                    OutputIndex = 2,
                    Gateway = i % 4 == 0 ? IPAddress.Parse("192.0.2.1") : null,
                    Priority = i % 2 == 0 ? 100u : null,
                    Table = 100,
                });
            }
            w.EndMessage();
            // The kernel fills dump datagrams up to 32 KiB (net/netlink/af_netlink.c netlink_dump).
            if (current.Count + w.Length > 32 * 1024)
            {
                list.Add([.. current]);
                current.Clear();
            }
            current.AddRange(w.WrittenSpan);
        }
        list.Add([.. current]);
        return list;
    }

    /// <summary>Walks every message and attribute in place and folds the fields a route table needs; allocates nothing.</summary>
    [Benchmark(OperationsPerInvoke = Routes)]
    public long RawReader()
    {
        long acc = 0;
        foreach (byte[] d in _datagrams)
        {
            var reader = new NetlinkMessageReader(d);
            while (reader.TryRead(out NetlinkMessage m))
            {
                if (m.Type != Nl.RTM_NEWROUTE)
                    continue;
                rtmsg h = m.Header<rtmsg>();
                acc += h.rtm_dst_len;
                var a = m.Attributes(12);
                while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
                {
                    switch (t)
                    {
                        case Nl.RTA_DST: acc += Attr.U32(v); break;
                        case Nl.RTA_OIF: acc += Attr.U32(v); break;
                        case Nl.RTA_TABLE: acc += Attr.U32(v); break;
                        case Nl.RTA_GATEWAY: acc ^= Attr.U32(v); break;
                        case Nl.RTA_PRIORITY: acc += Attr.U32(v); break;
                        default: break;
                    }
                }
            }
        }
        return acc;
    }

    /// <summary>Parses every message into a typed <see cref="Route"/> (addresses kept by value: one allocation per route).</summary>
    [Benchmark(OperationsPerInvoke = Routes)]
    public long Typed()
    {
        long acc = 0;
        foreach (byte[] d in _datagrams)
        {
            var reader = new NetlinkMessageReader(d);
            while (reader.TryRead(out NetlinkMessage m))
            {
                if (RouteCodec.TryParse(m, out Route r))
                    acc += r.Table + (r.OutputIndex ?? 0);
            }
        }
        return acc;
    }
}
