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
    private readonly byte[]?[] _keys;
    private readonly int[] _lengths;
    private readonly T?[] _values;
    private readonly int _mask;

    /// <summary>Creates a cache of 2^<paramref name="bits"/> slots.</summary>
    public DecodeCache(int bits)
    {
        int n = 1 << bits;
        _keys = new byte[n][];
        _lengths = new int[n];
        _values = new T[n];
        _mask = n - 1;
    }

    /// <summary>The cached value for exactly these bytes, or null; <paramref name="slot"/> is where to <see cref="Store"/> on a miss.</summary>
    public T? Find(ReadOnlySpan<byte> key, out int slot)
    {
        slot = Hash(key) & _mask;
        var v = _values[slot];
        if (v is not null && _lengths[slot] == key.Length && key.SequenceEqual(_keys[slot].AsSpan(0, key.Length)))
            return v;
        return null;
    }

    /// <summary>Remembers <paramref name="value"/> for <paramref name="key"/> in <paramref name="slot"/> (from <see cref="Find"/>).</summary>
    public void Store(int slot, ReadOnlySpan<byte> key, T value)
    {
        var k = _keys[slot];
        if (k is null || k.Length < key.Length)
            _keys[slot] = k = new byte[Math.Max(16, BitOperations.RoundUpToPowerOf2((uint)key.Length))];
        key.CopyTo(k);
        _lengths[slot] = key.Length;
        _values[slot] = value;
    }

    /// <summary>Forgets everything (e.g. when the session's AS number size changes).</summary>
    public void Clear() => Array.Clear(_values);

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
