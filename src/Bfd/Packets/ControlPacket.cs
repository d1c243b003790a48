using System.Buffers.Binary;

namespace Netcore.Bfd.Packets;

/// <summary>Why <see cref="ControlPacket.TryRead"/> rejected a datagram (RFC 5880 6.8.6).</summary>
internal enum PacketError : byte
{
    None = 0,
    TooShort,
    BadVersion,
    LengthTooSmall,
    LengthExceedsPayload,
    ZeroDetectMult,
    MultipointSet,
    ZeroMyDiscriminator,
    BadAuthSection,
}

/// <summary>
/// A BFD Control packet (RFC 5880 4.1): the mandatory section and the header of the optional
/// authentication section. A plain value: reading never allocates, the authentication payload
/// stays in the caller's buffer at <see cref="AuthOffset"/>.
/// </summary>
internal struct ControlPacket
{
    /// <summary>Size of the mandatory section (RFC 5880 4.1).</summary>
    public const int MandatoryLength = 24;

    /// <summary>The protocol version this code speaks (RFC 5880 4.1).</summary>
    public const byte CurrentVersion = 1;

    public byte Version;
    public BfdDiagnostic Diagnostic;
    public BfdState State;
    public bool Poll;
    public bool Final;
    public bool ControlPlaneIndependent;
    public bool AuthPresent;
    public bool Demand;
    public bool Multipoint;
    public byte DetectMult;
    public byte Length;
    public uint MyDiscriminator;
    public uint YourDiscriminator;
    public uint DesiredMinTxInterval;
    public uint RequiredMinRxInterval;
    public uint RequiredMinEchoRxInterval;

    // Authentication section header (RFC 5880 4.2-4.4), valid when AuthPresent.
    public BfdAuthType AuthType;
    public byte AuthLength;
    public byte AuthKeyId;
    public uint AuthSequence;

    /// <summary>Offset of the authentication section in the datagram (24).</summary>
    public const int AuthOffset = MandatoryLength;

    /// <summary>
    /// Parses and checks the rules of RFC 5880 6.8.6 that need no session state. The rules that
    /// do (discriminator lookup, A bit against the configuration, authentication) are applied by
    /// <see cref="Session.BfdStateMachine.Receive"/>.
    /// </summary>
    public static PacketError TryRead(ReadOnlySpan<byte> data, out ControlPacket p)
    {
        p = default;
        if (data.Length < MandatoryLength)
            return PacketError.TooShort;
        byte b0 = data[0], b1 = data[1];
        p.Version = (byte)(b0 >> 5);
        p.Diagnostic = (BfdDiagnostic)(b0 & 0x1F);
        p.State = (BfdState)(b1 >> 6);
        p.Poll = (b1 & 0x20) != 0;
        p.Final = (b1 & 0x10) != 0;
        p.ControlPlaneIndependent = (b1 & 0x08) != 0;
        p.AuthPresent = (b1 & 0x04) != 0;
        p.Demand = (b1 & 0x02) != 0;
        p.Multipoint = (b1 & 0x01) != 0;
        p.DetectMult = data[2];
        p.Length = data[3];
        p.MyDiscriminator = BinaryPrimitives.ReadUInt32BigEndian(data[4..]);
        p.YourDiscriminator = BinaryPrimitives.ReadUInt32BigEndian(data[8..]);
        p.DesiredMinTxInterval = BinaryPrimitives.ReadUInt32BigEndian(data[12..]);
        p.RequiredMinRxInterval = BinaryPrimitives.ReadUInt32BigEndian(data[16..]);
        p.RequiredMinEchoRxInterval = BinaryPrimitives.ReadUInt32BigEndian(data[20..]);

        // RFC 5880 6.8.6: "If the version number is not correct (1), the packet MUST be discarded."
        if (p.Version != CurrentVersion)
            return PacketError.BadVersion;
        // RFC 5880 6.8.6: "If the Length field is less than the minimum correct value (24 if the
        // A bit is clear, or 26 if the A bit is set), the packet MUST be discarded."
        if (p.Length < (p.AuthPresent ? MandatoryLength + 2 : MandatoryLength))
            return PacketError.LengthTooSmall;
        // RFC 5880 6.8.6: "If the Length field is greater than the payload of the encapsulating
        // protocol, the packet MUST be discarded."
        if (p.Length > data.Length)
            return PacketError.LengthExceedsPayload;
        // RFC 5880 6.8.6: "If the Detect Mult field is zero, the packet MUST be discarded."
        if (p.DetectMult == 0)
            return PacketError.ZeroDetectMult;
        // RFC 5880 6.8.6: "If the Multipoint (M) bit is nonzero, the packet MUST be discarded."
        if (p.Multipoint)
            return PacketError.MultipointSet;
        // RFC 5880 6.8.6: "If the My Discriminator field is zero, the packet MUST be discarded."
        if (p.MyDiscriminator == 0)
            return PacketError.ZeroMyDiscriminator;
        if (p.AuthPresent)
        {
            p.AuthType = (BfdAuthType)data[AuthOffset];
            p.AuthLength = data[AuthOffset + 1];
            // RFC 5880 4.1: the authentication section fills the rest of the packet (Length).
            if (AuthOffset + p.AuthLength != p.Length)
                return PacketError.BadAuthSection;
            switch (p.AuthType)
            {
                case BfdAuthType.SimplePassword:
                    // RFC 5880 4.2: Auth Len = 3 + password length, password 1 to 16 bytes.
                    if (p.AuthLength < 4 || p.AuthLength > 19)
                        return PacketError.BadAuthSection;
                    p.AuthKeyId = data[AuthOffset + 2];
                    break;
                case BfdAuthType.KeyedMd5:
                case BfdAuthType.MeticulousKeyedMd5:
                    // RFC 5880 4.3 / 6.7.3: "If the Auth Len field is not equal to 24, the packet MUST be discarded."
                    if (p.AuthLength != 24)
                        return PacketError.BadAuthSection;
                    p.AuthKeyId = data[AuthOffset + 2];
                    p.AuthSequence = BinaryPrimitives.ReadUInt32BigEndian(data[(AuthOffset + 4)..]);
                    break;
                case BfdAuthType.KeyedSha1:
                case BfdAuthType.MeticulousKeyedSha1:
                    // RFC 5880 4.4 / 6.7.4: "If the Auth Len field is not equal to 28, the packet MUST be discarded."
                    if (p.AuthLength != 28)
                        return PacketError.BadAuthSection;
                    p.AuthKeyId = data[AuthOffset + 2];
                    p.AuthSequence = BinaryPrimitives.ReadUInt32BigEndian(data[(AuthOffset + 4)..]);
                    break;
                default:
                    // RFC 5880 4.1: types 0 and 6-255 are reserved; nothing can authenticate them.
                    return PacketError.BadAuthSection;
            }
        }
        return PacketError.None;
    }

    /// <summary>
    /// Writes the mandatory section; <see cref="Length"/> and <see cref="AuthPresent"/> must already
    /// describe the authentication section the caller writes next (see <see cref="Authenticator"/>).
    /// Returns 24.
    /// </summary>
    public readonly int WriteMandatory(Span<byte> dest)
    {
        if (dest.Length < MandatoryLength)
            ThrowHelper.DestinationTooSmall();
        dest[0] = (byte)((Version << 5) | ((byte)Diagnostic & 0x1F));
        dest[1] = (byte)(((byte)State << 6)
            | (Poll ? 0x20 : 0) | (Final ? 0x10 : 0) | (ControlPlaneIndependent ? 0x08 : 0)
            | (AuthPresent ? 0x04 : 0) | (Demand ? 0x02 : 0) | (Multipoint ? 0x01 : 0));
        dest[2] = DetectMult;
        dest[3] = Length;
        BinaryPrimitives.WriteUInt32BigEndian(dest[4..], MyDiscriminator);
        BinaryPrimitives.WriteUInt32BigEndian(dest[8..], YourDiscriminator);
        BinaryPrimitives.WriteUInt32BigEndian(dest[12..], DesiredMinTxInterval);
        BinaryPrimitives.WriteUInt32BigEndian(dest[16..], RequiredMinRxInterval);
        BinaryPrimitives.WriteUInt32BigEndian(dest[20..], RequiredMinEchoRxInterval);
        return MandatoryLength;
    }
}

internal static class ThrowHelper
{
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void DestinationTooSmall() => throw new ArgumentException("The destination buffer is too small for a BFD Control packet.");
}
