using System.Net;
using System.Net.Sockets;
using Netcore.LoadBalancer.DataPlane;

namespace Netcore.LoadBalancer.Tests;

/// <summary>
/// The control plane's writer of lb_vips (no privileges): every bucket image it writes, in order,
/// is what a packet may read, so each one must show a service whole (old or new value) or not at
/// all, and a replaced service must never be missing.
/// </summary>
public class LbVipTableTests
{
    /// <summary><paramref name="count"/> service keys (TCP port 80) whose lb_vips bucket is the same.</summary>
    internal static LbServiceKey[] SameBucket(int count, IEnumerable<LbServiceKey>? avoid = null)
    {
        var avoided = (avoid ?? []).Select(k => LbMaps.VipBucket(k)).ToHashSet();
        var byBucket = new Dictionary<uint, List<LbServiceKey>>();
        for (int i = 1; ; i++)
        {
            var key = LbServiceKey.Create(new IPAddress([10, (byte)(i >> 16), (byte)(i >> 8), (byte)i]), 80, ProtocolType.Tcp);
            uint b = LbMaps.VipBucket(key);
            if (avoided.Contains(b))
                continue;
            if (!byBucket.TryGetValue(b, out var list))
                byBucket[b] = list = [];
            list.Add(key);
            if (list.Count == count)
                return [.. list];
        }
    }

    private sealed class Recorder
    {
        public List<(uint Bucket, LbVipBucket Image)> Writes { get; } = [];

        public void Write(uint bucket, LbVipBucket image) => Writes.Add((bucket, image));

        /// <summary>The values a packet to <paramref name="key"/> finds in each written image (null: none).</summary>
        public List<LbService?> Seen(LbServiceKey key)
        {
            string k = Convert.ToHexString(LbMaps.Bytes(key));
            var seen = new List<LbService?>();
            foreach (var (_, image) in Writes)
            {
                LbService? found = null;
                foreach (var slot in image)
                    if (slot.key.family != 0 && Convert.ToHexString(LbMaps.Bytes(slot.key)) == k)
                    {
                        found = slot.svc;
                        break;
                    }
                seen.Add(found);
            }
            return seen;
        }
    }

    [Fact]
    public void Add_WritesTheSlotInvisibleFirst_ThenSetsTheFamily()
    {
        var rec = new Recorder();
        var table = new LbVipTable(rec.Write);
        var key = LbServiceKey.Create(IPAddress.Parse("192.0.2.10"), 80, ProtocolType.Tcp);
        var svc = LbService.Create(3, 13, Encapsulation.Gue);
        table.Set(key, svc);
        Assert.Equal(2, rec.Writes.Count);
        Assert.All(rec.Writes, w => Assert.Equal(LbMaps.VipBucket(key), w.Bucket));
        Assert.Equal([null, svc], rec.Seen(key));
        // The two images differ in one byte: the family of the new slot.
        byte[] a = LbMaps.Bytes(rec.Writes[0].Image), b = LbMaps.Bytes(rec.Writes[1].Image);
        Assert.Single(Enumerable.Range(0, a.Length), i => a[i] != b[i]);
        Assert.Equal(svc.id, table.Lookup(key)!.Value.id);
        Assert.Equal([key], table.Keys());
        table.Set(key, svc); // unchanged: nothing written
        Assert.Equal(2, rec.Writes.Count);
    }

    [Fact]
    public void Replace_KeepsTheServiceVisibleInEveryImage_AndFreesTheOldSlot()
    {
        var rec = new Recorder();
        var table = new LbVipTable(rec.Write);
        var key = LbServiceKey.Create(IPAddress.Parse("2001:db8::10"), 443, ProtocolType.Udp);
        var v1 = LbService.Create(3, 13, Encapsulation.Ipip);
        var v2 = LbService.Create(3, 13, Encapsulation.Gue, 5555);
        table.Set(key, v1);
        int before = rec.Writes.Count;
        table.Set(key, v2);
        var seen = rec.Seen(key).Skip(before).ToList();
        Assert.All(seen, s => Assert.True(s is { } v && (v.encap == v1.encap || v.encap == v2.encap && v.gue_port == v2.gue_port), "missing or mixed"));
        Assert.Equal(v2.gue_port, seen[^1]!.Value.gue_port);
        var last = rec.Writes[^1].Image;
        Assert.Equal(1, Enumerable.Range(0, LbMaps.VipWays).Count(w => last[w].key.family != 0));
        Assert.True(table.Remove(key));
        Assert.Null(rec.Seen(key)[^1]);
        Assert.Empty(table.Keys());
        Assert.False(table.Remove(key));
    }

    [Fact]
    public void FullBucket_RefusesANewKey_ButStillReplacesAValue()
    {
        var keys = SameBucket(LbMaps.VipWays + 1);
        var rec = new Recorder();
        var table = new LbVipTable(rec.Write);
        for (int i = 0; i < LbMaps.VipWays; i++)
            table.Set(keys[i], LbService.Create((uint)i, 13, Encapsulation.Ipip));
        Assert.False(table.HasRoomFor(keys[^1]));
        Assert.True(table.HasRoomFor(keys[0]));
        var e = Assert.Throws<LbVipBucketFullException>(() => table.Set(keys[^1], LbService.Create(9, 13, Encapsulation.Ipip)));
        Assert.Equal(LbMaps.VipBucket(keys[0]), e.Bucket);
        // No free slot: the value is replaced in place through "absent" (documented in lb.h).
        table.Set(keys[1], LbService.Create(1, 13, Encapsulation.Gue));
        Assert.Equal((byte)Encapsulation.Gue, table.Lookup(keys[1])!.Value.encap);
        Assert.All(keys[..LbMaps.VipWays], k => Assert.NotNull(table.Lookup(k)));
        // Removing one makes room.
        Assert.True(table.Remove(keys[0]));
        table.Set(keys[^1], LbService.Create(9, 13, Encapsulation.Ipip));
        Assert.Equal(9u, table.Lookup(keys[^1])!.Value.id);
    }

    [Fact]
    public void Reading_TheMapBack_RestoresTheTable()
    {
        var images = new Dictionary<uint, LbVipBucket>();
        var table = new LbVipTable((b, v) => images[b] = v);
        var keys = SameBucket(3).Append(LbServiceKey.Create(IPAddress.Parse("2001:db8::1"), 53, ProtocolType.Udp)).ToArray();
        for (int i = 0; i < keys.Length; i++)
            table.Set(keys[i], LbService.Create((uint)i, 13, Encapsulation.Gue));
        var again = new LbVipTable((b, v) => images[b] = v, b => images.GetValueOrDefault(b));
        Assert.Equal(keys.Select(k => Convert.ToHexString(LbMaps.Bytes(k))).Order(), again.Keys().Select(k => Convert.ToHexString(LbMaps.Bytes(k))).Order());
        Assert.All(keys.Select((k, i) => (k, i)), x => Assert.Equal((uint)x.i, again.Lookup(x.k)!.Value.id));
    }
}
