using System.Buffers.Binary;
using System.Net;
using System.Numerics;
using System.Runtime.CompilerServices;

namespace Netcore.Bgp.Attributes;

/// <summary>
/// A small direct-mapped cache from an attribute's wire bytes to the immutable object they decode to
/// (an <see cref="AsPath"/>, a community array, a next hop). One per session (<see cref="Messages.CodecContext"/>),
/// used only by that session's reader, so it needs no lock. A table dump repeats the same AS paths,
/// community lists and next hops across many UPDATEs: with the cache they decode to one shared instance,
/// which costs no allocation on the read path and lets a RIB compare them by reference.
/// A slot holds the last value that hashed to it; a miss simply replaces it (bounded memory).
/// </summary>
/// <typeparam name="T">The decoded, immutable value.</typeparam>
internal sealed class DecodeCache<T> where T : class
{
    // One array of entries, so a probe touches one cache line (the key bytes only when the hash matches).
    private struct Entry
    {
        public int Hash;
        public int Length;
        public byte[]? Key;
        public T? Value;
    }

    private readonly Entry[] _entries;
    private readonly int _mask;

    /// <summary>Creates a cache of 2^<paramref name="bits"/> slots.</summary>
    public DecodeCache(int bits)
    {
        _entries = new Entry[1 << bits];
        _mask = (1 << bits) - 1;
    }

    /// <summary>The cached value for exactly these bytes, or null; <paramref name="slot"/> (the key's hash) is what to give <see cref="Store"/> on a miss.</summary>
    public T? Find(ReadOnlySpan<byte> key, out int slot)
    {
        int h = Hash(key);
        slot = h;
        ref var e = ref _entries[h & _mask];
        if (e.Value is not null && e.Hash == h && e.Length == key.Length && key.SequenceEqual(e.Key.AsSpan(0, key.Length)))
            return e.Value;
        return null;
    }

    /// <summary>Remembers <paramref name="value"/> for <paramref name="key"/> in <paramref name="slot"/> (from <see cref="Find"/>).</summary>
    public void Store(int slot, ReadOnlySpan<byte> key, T value)
    {
        ref var e = ref _entries[slot & _mask];
        if (e.Key is null || e.Key.Length < key.Length)
            e.Key = new byte[Math.Max(16, BitOperations.RoundUpToPowerOf2((uint)key.Length))];
        key.CopyTo(e.Key);
        e.Hash = slot;
        e.Length = key.Length;
        e.Value = value;
    }

    /// <summary>Forgets everything (e.g. when the session's AS number size changes).</summary>
    public void Clear()
    {
        for (int i = 0; i < _entries.Length; i++)
            _entries[i].Value = null;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Hash(ReadOnlySpan<byte> key)
    {
        // A multiply-rotate hash over 8-octet words: good enough spread for a direct-mapped table.
        ulong h = 0x9E3779B97F4A7C15UL ^ (ulong)key.Length;
        while (key.Length >= 8)
        {
            h = (BitOperations.RotateLeft(h, 23) ^ BinaryPrimitives.ReadUInt64LittleEndian(key)) * 0xFF51AFD7ED558CCDUL;
            key = key[8..];
        }
        ulong tail = 0;
        for (int i = 0; i < key.Length; i++)
            tail = (tail << 8) | key[i];
        h = (BitOperations.RotateLeft(h, 23) ^ tail) * 0xC4CEB9FE1A85EC53UL;
        return (int)(h >> 33);
    }
}

/// <summary>The per-session decode caches (created on first use).</summary>
internal sealed class DecodeCaches
{
    /// <summary>AS_PATH bytes (at the session's AS size) to the decoded path.</summary>
    public readonly DecodeCache<AsPath> AsPaths = new(12);

    /// <summary>COMMUNITIES bytes to the decoded array.</summary>
    public readonly DecodeCache<BgpCommunity[]> Communities = new(10);

    /// <summary>LARGE_COMMUNITY bytes to the decoded array.</summary>
    public readonly DecodeCache<BgpLargeCommunity[]> LargeCommunities = new(8);

    /// <summary>EXTENDED_COMMUNITIES bytes to the decoded array.</summary>
    public readonly DecodeCache<BgpExtendedCommunity[]> ExtendedCommunities = new(8);

    /// <summary>Next hop bytes (NEXT_HOP, MP_REACH global and link-local) to the address.</summary>
    public readonly DecodeCache<IPAddress> Addresses = new(6);

    /// <summary>The AS size (2 or 4) the cached paths were decoded with.</summary>
    public int AsSize = 4;
}
