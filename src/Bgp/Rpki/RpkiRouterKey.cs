namespace Netcore.Bgp;

/// <summary>
/// A BGPsec router key received over RPKI-RTR version 1 (RFC 8210 5.10): the Subject Key Identifier,
/// the AS and the DER Subject Public Key Info. Two keys are equal when all three are (the record's
/// identity for announcements and withdrawals).
/// </summary>
public sealed class RpkiRouterKey : IEquatable<RpkiRouterKey>
{
    private readonly byte[] _ski;
    private readonly byte[] _spki;

    /// <summary>Creates a key.</summary>
    /// <exception cref="ArgumentException">The SKI is not 20 bytes.</exception>
    public RpkiRouterKey(ReadOnlySpan<byte> subjectKeyIdentifier, uint asn, ReadOnlySpan<byte> subjectPublicKeyInfo)
    {
        // RFC 8210 5.10: the SKI is 20 octets.
        if (subjectKeyIdentifier.Length != 20)
            throw new ArgumentException("the Subject Key Identifier is 20 bytes", nameof(subjectKeyIdentifier));
        _ski = subjectKeyIdentifier.ToArray();
        Asn = asn;
        _spki = subjectPublicKeyInfo.ToArray();
    }

    /// <summary>The 20-byte Subject Key Identifier.</summary>
    public ReadOnlyMemory<byte> SubjectKeyIdentifier => _ski;

    /// <summary>The AS the key belongs to.</summary>
    public uint Asn { get; }

    /// <summary>The DER-encoded Subject Public Key Info.</summary>
    public ReadOnlyMemory<byte> SubjectPublicKeyInfo => _spki;

    /// <inheritdoc />
    public bool Equals(RpkiRouterKey? other) =>
        other is not null && Asn == other.Asn && _ski.AsSpan().SequenceEqual(other._ski) && _spki.AsSpan().SequenceEqual(other._spki);

    /// <inheritdoc />
    public override bool Equals(object? obj) => Equals(obj as RpkiRouterKey);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.Add(Asn);
        h.AddBytes(_ski);
        h.AddBytes(_spki);
        return h.ToHashCode();
    }

    /// <inheritdoc />
    public override string ToString() => $"AS{Asn} SKI {Convert.ToHexString(_ski)} ({_spki.Length}-byte key)";
}
