using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using Netcore.Netlink;
using Netcore.Netlink.Core;

namespace Netcore.Benchmarks.Netlink;

/// <summary>
/// The Netcore side of benchmarks/compare/netlink-routes.sh and long netlink runs:
/// install/dump timing inside a namespace, dump capture for the parse benchmark, and a long fuzz.
/// </summary>
public static class NetlinkRouteTools
{
    private static string Arg(string[] args, string name, string? fallback = null)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback ?? throw new ArgumentException($"missing {name}");
    }

    private static int Int(string[] args, string name, int? fallback = null) =>
        int.Parse(Arg(args, name, fallback?.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

    /// <summary>IPv4 /32 routes base+0 .. base+count-1 via DEV in TABLE (the same list the script feeds to ip -batch).</summary>
    internal static IEnumerable<Route> Routes(uint baseAddress, int count, int oif, uint table)
    {
        for (int i = 0; i < count; i++)
        {
            yield return new Route
            {
                Destination = new IPNetwork(new IPAddress(BinaryPrimitives.ReverseEndianness(baseAddress + (uint)i)), 32),
                OutputIndex = oif,
                Table = table,
            };
        }
    }

    private static uint ParseBase(string s) => BinaryPrimitives.ReverseEndianness(BitConverter.ToUInt32(IPAddress.Parse(s).GetAddressBytes()));

    /// <summary>
    /// netlink-routes install|dump|populate --netns NS --table T [--dev DEV --count N --base A.B.C.D].
    /// install: warms up, then times a pipelined install of N routes (RESULT install_ms=..).
    /// dump: times a typed dump of the table (RESULT dump_ms=.. routes=..). populate: installs untimed.
    /// </summary>
    [Tool("netlink-routes", "route install/dump timing for benchmarks/compare/netlink-routes.sh")]
    public static int Run(string[] args)
    {
        string mode = args[0];
        using var client = NetlinkClient.Open(Arg(args, "--netns"));
        uint table = (uint)Int(args, "--table");
        switch (mode)
        {
            case "install":
            case "populate":
            {
                int oif = client.GetLinkIndexAsync(Arg(args, "--dev")).AsTask().GetAwaiter().GetResult();
                int count = Int(args, "--count");
                uint baseAddr = ParseBase(Arg(args, "--base", "10.0.0.0"));
                if (mode == "install")
                {
                    // Warm-up (JIT, socket pool) on a scratch table, then removed.
                    var warm = Routes(ParseBase("198.18.0.0"), 2000, oif, table + 1).ToList();
                    Check(client.AddRoutesAsync(warm).AsTask().GetAwaiter().GetResult());
                    Check(client.DeleteRoutesAsync(warm).AsTask().GetAwaiter().GetResult());
                }
                var sw = Stopwatch.StartNew();
                IReadOnlyList<BatchError> errors = client.AddRoutesAsync(Routes(baseAddr, count, oif, table)).AsTask().GetAwaiter().GetResult();
                sw.Stop();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT install_ms={sw.Elapsed.TotalMilliseconds:F1} routes={count} errors={errors.Count}"));
                return errors.Count == 0 ? 0 : 1;
            }
            case "dump":
            {
                // Warm-up: one dump of the (small) main table.
                _ = client.GetRouteListAsync(new RouteFilter { Table = RouteTables.Main }).AsTask().GetAwaiter().GetResult();
                var sw = Stopwatch.StartNew();
                if (Array.IndexOf(args, "--raw") >= 0)
                {
                    // The same dump read with the raw reader only (no typed objects): isolates kernel + receive cost.
                    int n = 0;
                    client.DumpRaw(Nl.RTM_GETROUTE, "raw dump", w => RouteCodec.WriteDumpRequest(w, new RouteFilter { Table = table }),
                        (in NetlinkMessage m) => { if (m.Type == Nl.RTM_NEWROUTE) n++; });
                    sw.Stop();
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT raw_dump_ms={sw.Elapsed.TotalMilliseconds:F1} routes={n}"));
                    return 0;
                }
                List<Route> routes = client.GetRouteListAsync(new RouteFilter { Table = table }).AsTask().GetAwaiter().GetResult();
                sw.Stop();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT dump_ms={sw.Elapsed.TotalMilliseconds:F1} routes={routes.Count} gen0={GC.CollectionCount(0)} gen1={GC.CollectionCount(1)} gen2={GC.CollectionCount(2)}"));
                return 0;
            }
            default:
                Console.Error.WriteLine("usage: netlink-routes install|populate|dump --netns NS --table T [--dev DEV --count N --base A.B.C.D]");
                return 2;
        }
    }

    private static void Check(IReadOnlyList<BatchError> errors)
    {
        if (errors.Count > 0)
            throw errors[0].Error;
    }

    /// <summary>netlink-capture --netns NS --table T --out FILE: writes the raw datagrams of a route dump (4-byte length prefix each).</summary>
    [Tool("netlink-capture", "capture a raw route dump for RouteDumpParseBenchmarks (NETCORE_ROUTE_DUMP=file)")]
    public static int Capture(string[] args)
    {
        using var client = NetlinkClient.Open(Arg(args, "--netns"));
        uint table = (uint)Int(args, "--table");
        using var f = File.Create(Arg(args, "--out"));
        int n = 0;
        client.DumpRaw(Nl.RTM_GETROUTE, "capture", w => RouteCodec.WriteDumpRequest(w, new RouteFilter { Table = table }), (in NetlinkMessage m) =>
        {
            // Re-frame each message as its own datagram-sized record (header + payload).
            Span<byte> hdr = stackalloc byte[20];
            BinaryPrimitives.WriteInt32LittleEndian(hdr, 16 + m.Payload.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(hdr[4..], (uint)(16 + m.Payload.Length));
            BinaryPrimitives.WriteUInt16LittleEndian(hdr[8..], m.Type);
            BinaryPrimitives.WriteUInt16LittleEndian(hdr[10..], m.Flags);
            BinaryPrimitives.WriteUInt32LittleEndian(hdr[12..], m.Seq);
            BinaryPrimitives.WriteUInt32LittleEndian(hdr[16..], m.PortId);
            f.Write(hdr);
            f.Write(m.Payload);
            int pad = Nl.Align(m.Payload.Length) - m.Payload.Length;
            for (int i = 0; i < pad; i++) f.WriteByte(0);
            n++;
        });
        Console.WriteLine($"captured {n} messages");
        return 0;
    }

    /// <summary>Reads a capture into datagrams of up to 32 KiB (as the kernel sends them).</summary>
    internal static List<byte[]> ReadCapture(string file)
    {
        byte[] all = File.ReadAllBytes(file);
        var list = new List<byte[]>();
        var current = new List<byte>(33 * 1024);
        int off = 0;
        while (off + 4 <= all.Length)
        {
            int len = BinaryPrimitives.ReadInt32LittleEndian(all.AsSpan(off));
            int padded = Nl.Align(len);
            if (current.Count + padded > 32 * 1024)
            {
                list.Add([.. current]);
                current.Clear();
            }
            current.AddRange(all.AsSpan(off + 4, padded));
            off += 4 + padded;
        }
        list.Add([.. current]);
        return list;
    }

    /// <summary>netlink-fuzz [cases] [seed]: the parser fuzz of the tests, longer (default 10 million cases).</summary>
    [Tool("netlink-fuzz", "long random/mutation fuzz of the netlink parsers (only NetlinkFormatException allowed)")]
    public static int Fuzz(string[] args)
    {
        long cases = args.Length > 0 ? long.Parse(args[0], CultureInfo.InvariantCulture) : 10_000_000;
        int seed = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 0x4E43;
        var rng = new Random(seed);
        List<byte[]> seeds = [.. RouteDumpParseBenchmarks.Synthesize(50)];
        var sw = Stopwatch.StartNew();
        byte[] buf = new byte[4096];
        for (long i = 0; i < cases; i++)
        {
            byte[] input;
            if (i % 3 == 0)
            {
                input = buf.AsSpan(0, rng.Next(0, 512)).ToArray();
                rng.NextBytes(input);
            }
            else
            {
                byte[] s = seeds[rng.Next(seeds.Count)];
                input = s.AsSpan(0, rng.Next(0, s.Length + 1)).ToArray();
                for (int k = rng.Next(1, 8); k > 0 && input.Length > 0; k--)
                    input[rng.Next(input.Length)] = (byte)rng.Next(256);
            }
            try
            {
                NetlinkParsers.ParseAll(input);
                NetlinkParsers.ParseGenericControl(input);
            }
            catch (NetlinkFormatException)
            {
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"case {i} (seed {seed}): {e.GetType().Name}: {e.Message}\n{Convert.ToHexString(input)}");
                return 1;
            }
        }
        Console.WriteLine($"netlink-fuzz: {cases} cases, seed {seed}, {sw.Elapsed.TotalSeconds:F1} s, only NetlinkFormatException");
        return 0;
    }
}
