using System.Diagnostics;
using Netcore.Bgp.Messages;

namespace Netcore.Benchmarks.Bgp;

/// <summary>Long UPDATE fuzz run: random and mutated UPDATEs must always yield an RFC 7606 action, never throw.</summary>
public static class BgpFuzzTool
{
    [Tool("bgp-fuzz", "decode N mutated/random UPDATEs (default 10M); fails on any exception or inconsistent RFC 7606 result")]
    public static int Run(string[] args)
    {
        long cases = args.Length > 0 ? long.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 10_000_000;
        int seed = args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 1;
        var (_, messages) = UpdateStream.Build(2000, seed);
        var rnd = new Random(seed);
        var r = new UpdateParseResult();
        var counts = new long[5];
        var ctxs = new[] { new CodecContext(), new CodecContext { FourOctetAs = false }, new CodecContext { AddPathReceiveIPv4 = true, AddPathReceiveIPv6 = true } };
        byte[] buf = new byte[4200];
        var sw = Stopwatch.StartNew();
        for (long i = 0; i < cases; i++)
        {
            byte[] src = messages[rnd.Next(messages.Count)];
            int len = src.Length - 19;
            src.AsSpan(19).CopyTo(buf);
            switch (rnd.Next(4))
            {
                case 0: for (int k = rnd.Next(1, 8); k > 0; k--) buf[rnd.Next(len)] = (byte)rnd.Next(256); break;
                case 1: len = rnd.Next(len + 1); break;
                case 2: len = rnd.Next(200); rnd.NextBytes(buf.AsSpan(0, len)); break;
                default: buf[rnd.Next(Math.Min(len, 8))] ^= (byte)(1 << rnd.Next(8)); break;
            }
            UpdateCodec.Decode(buf.AsSpan(0, len), ctxs[i % 3], r);
            counts[(int)r.Action]++;
            if (r.Action == UpdateAction.TreatAsWithdraw && r.Announced.Count > 0)
            {
                Console.Error.WriteLine($"case {i}: treat-as-withdraw left routes announced: {Convert.ToHexString(buf, 0, len)}");
                return 1;
            }
        }
        Console.WriteLine($"stream of 20000 prefixes = {UpdateStream.Build(20_000).Messages.Count} UPDATEs");
        Console.WriteLine($"bgp-fuzz: {cases} cases in {sw.Elapsed.TotalSeconds:F1}s; none {counts[0]}, attribute-discard {counts[1]}, treat-as-withdraw {counts[2]}, session-reset {counts[4]}");
        return 0;
    }
}
