using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Netcore.Bfd.Packets;

/// <summary>
/// The authentication state of one session (RFC 5880 6.7): signs transmitted packets and checks
/// received ones, keeping bfd.XmitAuthSeq, bfd.RcvAuthSeq and bfd.AuthSeqKnown. Works in place on
/// the packet buffer and never allocates.
/// </summary>
internal sealed class Authenticator
{
    private readonly BfdAuthType _type;
    private readonly bool _hmac;
    private readonly byte[][] _secrets = new byte[256][];
    private readonly byte _txKeyId;

    public Authenticator(BfdAuthentication config, uint initialSequence)
    {
        config.Validate();
        _type = config.Type;
        _hmac = config.HmacSha1Compatibility;
        _txKeyId = config.TransmitKeyId;
        foreach (BfdAuthKey k in config.Keys)
            _secrets[k.Id] = k.Secret.ToArray();
        // RFC 5880 6.8.1: bfd.XmitAuthSeq MUST be initialized to a random 32-bit value.
        XmitAuthSeq = initialSequence;
    }

    public BfdAuthType Type => _type;

    public uint XmitAuthSeq { get; private set; }

    public uint RcvAuthSeq { get; private set; }

    public bool AuthSeqKnown { get; private set; }

    /// <summary>Auth Len of the section this authenticator writes.</summary>
    public int SectionLength => _type switch
    {
        BfdAuthType.SimplePassword => 3 + _secrets[_txKeyId].Length,
        BfdAuthType.KeyedMd5 or BfdAuthType.MeticulousKeyedMd5 => 24,
        _ => 28,
    };

    /// <summary>Carries bfd.RcvAuthSeq and bfd.AuthSeqKnown over to a new key set (key rollover).</summary>
    public void CopyReceiveState(Authenticator old)
    {
        RcvAuthSeq = old.RcvAuthSeq;
        AuthSeqKnown = old.AuthSeqKnown;
    }

    /// <summary>RFC 5880 6.8.1: bfd.AuthSeqKnown is reset after no packet for twice the Detection Time.</summary>
    public void ResetReceiveSequence() => AuthSeqKnown = false;

    /// <summary>
    /// Writes the authentication section at offset 24 of <paramref name="packet"/> (whose first
    /// <see cref="ControlPacket.MandatoryLength"/> bytes are already written with the A bit and the
    /// full Length) and computes the digest over the whole packet (RFC 5880 6.7.2-6.7.4).
    /// </summary>
    public void Sign(Span<byte> packet)
    {
        Span<byte> a = packet[ControlPacket.AuthOffset..];
        byte[] secret = _secrets[_txKeyId];
        a[0] = (byte)_type;
        a[1] = (byte)SectionLength;
        a[2] = _txKeyId;
        if (_type == BfdAuthType.SimplePassword)
        {
            // RFC 5880 6.7.2: the password is carried in the clear.
            secret.CopyTo(a[3..]);
            return;
        }
        a[3] = 0; // Reserved, RFC 5880 4.3/4.4: "MUST be set to zero on transmit".
        // RFC 5880 6.7.3/6.7.4: for the meticulous variants bfd.XmitAuthSeq MUST be incremented
        // for every packet; for the others it MAY be. Incrementing always satisfies both.
        XmitAuthSeq++;
        BinaryPrimitives.WriteUInt32BigEndian(a[4..], XmitAuthSeq);
        int digestLength = a[1] - 8;
        Span<byte> digest = a.Slice(8, digestLength);
        Span<byte> whole = packet[..(ControlPacket.AuthOffset + a[1])];
        ComputeDigest(whole, digest, secret);
    }

    /// <summary>
    /// RFC 5880 6.7.2-6.7.4: checks the authentication section of a received packet (already
    /// accepted by <see cref="ControlPacket.TryRead"/>). The digest field of <paramref name="packet"/>
    /// is overwritten during the check. Updates bfd.RcvAuthSeq on success.
    /// </summary>
    public bool Verify(Span<byte> packet, in ControlPacket p)
    {
        // RFC 5880 6.7.2-6.7.4: "If the Auth Type field does not match the configured type, discard."
        if (p.AuthType != _type)
            return false;
        // "If the Auth Key ID field does not match the ID of a configured authentication key, the
        // received packet MUST be discarded."
        byte[]? secret = _secrets[p.AuthKeyId];
        if (secret is null)
            return false;
        Span<byte> a = packet[ControlPacket.AuthOffset..p.Length];
        if (_type == BfdAuthType.SimplePassword)
        {
            // RFC 5880 6.7.2: "If the Password field does not match the password for the key, discard."
            return a[3..].SequenceEqual(secret);
        }
        bool meticulous = _type is BfdAuthType.MeticulousKeyedMd5 or BfdAuthType.MeticulousKeyedSha1;
        if (AuthSeqKnown)
        {
            // RFC 5880 6.7.3/6.7.4: keyed: discard outside bfd.RcvAuthSeq .. bfd.RcvAuthSeq+(3*Detect Mult)
            // inclusive; meticulous: outside bfd.RcvAuthSeq+1 .. bfd.RcvAuthSeq+(3*Detect Mult);
            // both in the unsigned 32-bit circular number space.
            uint delta = unchecked(p.AuthSequence - RcvAuthSeq);
            uint window = 3u * p.DetectMult;
            if (delta > window || (meticulous && delta == 0))
                return false;
        }
        Span<byte> digest = a[8..];
        Span<byte> received = stackalloc byte[20];
        digest.CopyTo(received);
        ComputeDigest(packet[..p.Length], digest, secret);
        if (!CryptographicOperations.FixedTimeEquals(digest, received[..digest.Length]))
            return false;
        // "If the computed digest matches the received digest, set bfd.RcvAuthSeq to the Sequence
        // Number field and bfd.AuthSeqKnown to 1."
        RcvAuthSeq = p.AuthSequence;
        AuthSeqKnown = true;
        return true;
    }

    /// <summary>
    /// Places the key (zero-padded) in the digest field and hashes the whole packet into
    /// <paramref name="digest"/> (RFC 5880 6.7.3 MD5, 6.7.4 SHA1); or the HMAC-SHA1 variant.
    /// </summary>
    private void ComputeDigest(Span<byte> whole, Span<byte> digest, byte[] secret)
    {
        Span<byte> result = stackalloc byte[20];
        if (_hmac && digest.Length == 20)
        {
            digest.Clear();
            HMACSHA1.HashData(secret, whole, result);
        }
        else
        {
            digest.Clear();
            secret.CopyTo(digest);
            if (digest.Length == 16)
                MD5.HashData(whole, result);
            else
                SHA1.HashData(whole, result);
        }
        result[..digest.Length].CopyTo(digest);
    }
}
