namespace Netcore.LoadBalancer.DataPlane;

/// <summary>The service key's bucket of lb_vips has all its slots in use (LB_VIP_WAYS).</summary>
internal sealed class LbVipBucketFullException(uint bucket)
    : InvalidOperationException($"lb_vips bucket {bucket} has all {LbMaps.VipWays} slots in use by other services")
{
    /// <summary>The full bucket.</summary>
    public uint Bucket { get; } = bucket;
}

/// <summary>
/// The control plane's copy of lb_vips (bpf/lb.h): which slot of its bucket each service key is
/// in, and every change written so that a packet reading a bucket while it is rewritten (an ARRAY
/// element is copied without a lock) sees a service whole or not at all:
/// <list type="bullet">
/// <item>add: the slot is written with family 0 (no packet matches it), then again with the
/// family, so the second write changes one byte;</item>
/// <item>remove: family 0 (one byte), then the slot is zeroed (it matched nothing already);</item>
/// <item>replace a value: the new value is added in a free slot of the bucket, then the old slot
/// is removed, so a packet finds the old or the new value; with no free slot the old one is
/// removed first and the new one added (packets to it go to the stack for two map updates).</item>
/// </list>
/// Each write is a whole bucket through <c>write</c> (one BPF_MAP_UPDATE_ELEM), in this order.
/// </summary>
internal sealed class LbVipTable
{
    private readonly LbVipBucket[] _buckets = new LbVipBucket[LbMaps.VipBuckets];
    private readonly Action<uint, LbVipBucket> _write;

    /// <summary>Creates the table from the buckets read from the map (null: all empty).</summary>
    public LbVipTable(Action<uint, LbVipBucket> write, Func<uint, LbVipBucket>? read = null)
    {
        _write = write;
        if (read is not null)
            for (uint b = 0; b < LbMaps.VipBuckets; b++)
                _buckets[b] = read(b);
    }

    /// <summary>Keys of the services in the table.</summary>
    public IReadOnlyList<LbServiceKey> Keys()
    {
        var list = new List<LbServiceKey>();
        foreach (var bucket in _buckets)
            foreach (var slot in bucket)
                if (slot.key.family != 0)
                    list.Add(slot.key);
        return list;
    }

    /// <summary>True when the key is in the table or its bucket has a free slot.</summary>
    public bool HasRoomFor(in LbServiceKey key)
    {
        uint b = LbMaps.VipBucket(key);
        return Find(b, key) >= 0 || FreeSlot(b) >= 0;
    }

    /// <summary>The value of a key, if present.</summary>
    public LbService? Lookup(in LbServiceKey key)
    {
        uint b = LbMaps.VipBucket(key);
        int w = Find(b, key);
        return w < 0 ? null : _buckets[b][w].svc;
    }

    /// <summary>Adds or replaces a service.</summary>
    /// <exception cref="LbVipBucketFullException">The key is new and its bucket is full.</exception>
    public void Set(in LbServiceKey key, in LbService value)
    {
        if (key.family == 0)
            throw new ArgumentException("A service key has a family.", nameof(key));
        uint b = LbMaps.VipBucket(key);
        int old = Find(b, key);
        if (old >= 0 && Equals(_buckets[b][old].svc, value))
            return;
        int free = FreeSlot(b);
        if (free < 0)
        {
            if (old < 0)
                throw new LbVipBucketFullException(b);
            Remove(b, old);
            free = old;
        }
        var slot = new LbVip { key = key, svc = value };
        byte family = slot.key.family;
        slot.key.family = 0;
        _buckets[b][free] = slot;
        _write(b, _buckets[b]);
        _buckets[b][free].key.family = family;
        _write(b, _buckets[b]);
        if (old >= 0 && old != free)
            Remove(b, old);
    }

    /// <summary>Removes a service; false when it was not there.</summary>
    public bool Remove(in LbServiceKey key)
    {
        uint b = LbMaps.VipBucket(key);
        int w = Find(b, key);
        if (w < 0)
            return false;
        Remove(b, w);
        return true;
    }

    private void Remove(uint b, int w)
    {
        _buckets[b][w].key.family = 0;
        _write(b, _buckets[b]);
        _buckets[b][w] = default;
        _write(b, _buckets[b]);
    }

    private int Find(uint b, in LbServiceKey key)
    {
        for (int w = 0; w < LbMaps.VipWays; w++)
            if (_buckets[b][w].key.family != 0 && SameKey(_buckets[b][w].key, key))
                return w;
        return -1;
    }

    private int FreeSlot(uint b)
    {
        for (int w = 0; w < LbMaps.VipWays; w++)
            if (_buckets[b][w].key.family == 0)
                return w;
        return -1;
    }

    private static bool SameKey(in LbServiceKey a, in LbServiceKey b) =>
        LbMaps.Bytes(a).AsSpan().SequenceEqual(LbMaps.Bytes(b));

    private static bool Equals(in LbService a, in LbService b) =>
        a.id == b.id && a.table_size == b.table_size && a.encap == b.encap && a.flags == b.flags && a.gue_port == b.gue_port;
}
