// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @title RewardAnchor: the epoch roots of the p2pnode ledger and claims against the newest.
/// @notice Anchors one Merkle root per epoch, in increasing epoch order, by the epoch's
/// anchorer in a fixed rotation or by a fallback once it is due; pays an account's
/// cumulative amount minus what it was paid before, in wei, to the payee an anchorer bound
/// to it, when a proof shows (account, cumulative) under the newest root.
///
///   leaf(account, amount) = keccak256(0x00 || account || uint256 amount)   65 bytes in
///   node(x, y)            = keccak256(min(x, y) || max(x, y))              64 bytes in
///
/// Storage is kept to what the checks need, for gas: the newest (epoch, root) and one slot
/// per account holding its payee and what it was paid. Older roots, counts and anchorers
/// live in the Anchored events. A refusal reverts with Error(string) whose text is the
/// reason code of the Python interface (p2pnode/chain/base.py ChainReason), or "unpaid"
/// when the payment itself failed (the contract lacks the funds, or the payee refused).
contract RewardAnchor {
    /// The newest anchored root; zero before the first anchor (roots are never zero).
    bytes32 private _root;
    /// The newest anchored epoch (meaningful once _root is set).
    uint256 private _epoch;
    /// Per account: what it was paid so far (high 96 bits) and its payee (low 160 bits).
    mapping(bytes32 => uint256) private _accounts;

    uint256 private constant _PAYEE_MASK = (1 << 160) - 1;
    uint256 private constant _MAX_PAID = (1 << 96) - 1;
    uint256 private constant _MAX_DEPTH = 64;

    uint256 private immutable _n;
    address private immutable _a0;
    address private immutable _a1;
    address private immutable _a2;
    address private immutable _a3;
    address private immutable _a4;
    address private immutable _a5;
    address private immutable _a6;
    address private immutable _a7;
    uint256 private immutable _epochLen;
    uint256 private immutable _grace;
    uint256 private immutable _fallbackAfter;
    uint256 private immutable _deployedAt;

    event Anchored(uint256 indexed epoch, bytes32 root, uint256 count, address anchorer);
    event Bound(bytes32 indexed account, address payee);
    event Claimed(bytes32 indexed account, address payee, uint256 cumulative, uint256 paid);

    constructor(address[] memory anchorers, uint64 epochLen, uint64 grace, uint64 fallbackAfter)
        payable
    {
        uint256 n = anchorers.length;
        require(n >= 1 && n <= 8, "bad_anchorers");
        require(epochLen > 0, "bad_schedule");
        address[8] memory a;
        for (uint256 i = 0; i < n; ++i) {
            require(anchorers[i] != address(0), "bad_anchorers");
            a[i] = anchorers[i];
        }
        _n = n;
        _a0 = a[0];
        _a1 = a[1];
        _a2 = a[2];
        _a3 = a[3];
        _a4 = a[4];
        _a5 = a[5];
        _a6 = a[6];
        _a7 = a[7];
        _epochLen = epochLen;
        _grace = grace;
        _fallbackAfter = fallbackAfter;
        _deployedAt = block.number;
    }

    /// Funds the claims.
    receive() external payable {}

    // -- anchors ---------------------------------------------------------------------------

    /// Anchors `root` for `epoch`; `count` (the number of ledger elements it covers) is only
    /// emitted. Refusals, in this order: zero_root, root_exists (the newest epoch again),
    /// stale_epoch (an epoch below the newest), not_anchorer.
    function anchor(uint256 epoch, bytes32 root, uint256 count) external {
        require(root != bytes32(0), "zero_root");
        if (_root != bytes32(0)) {
            uint256 newest = _epoch;
            require(epoch != newest, "root_exists");
            require(epoch > newest, "stale_epoch");
        }
        require(_mayAnchor(epoch, msg.sender, block.timestamp), "not_anchorer");
        _root = root;
        _epoch = epoch;
        emit Anchored(epoch, root, count, msg.sender);
    }

    /// Whether `sender` may anchor `epoch` at time `nowS`: it is the k-th in the rotation
    /// from the designated anchorer, anchorers[epoch % n], and
    /// nowS >= (epoch + 1) * epochLen + grace + k * fallbackAfter.
    function mayAnchor(uint256 epoch, address sender, uint256 nowS) external view returns (bool) {
        return _mayAnchor(epoch, sender, nowS);
    }

    function _mayAnchor(uint256 epoch, address sender, uint256 nowS) private view returns (bool) {
        if (sender == address(0)) {
            return false;
        }
        uint256 n = _n;
        uint256 r = epoch % n;
        uint256 k = n; // n: not an anchorer
        // Every slot past n holds address(0), which is no sender; the smallest k wins
        // where an address appears more than once.
        if (sender == _a0) k = _minK(k, 0, r, n);
        if (sender == _a1) k = _minK(k, 1, r, n);
        if (sender == _a2) k = _minK(k, 2, r, n);
        if (sender == _a3) k = _minK(k, 3, r, n);
        if (sender == _a4) k = _minK(k, 4, r, n);
        if (sender == _a5) k = _minK(k, 5, r, n);
        if (sender == _a6) k = _minK(k, 6, r, n);
        if (sender == _a7) k = _minK(k, 7, r, n);
        if (k == n) {
            return false;
        }
        // nowS >= (epoch + 1) * epochLen + grace + k * fallbackAfter, where a right side
        // past 2^256 - 1 is a time never reached.
        unchecked {
            uint256 len = _epochLen;
            if (epoch >= type(uint256).max / len) {
                return false; // (epoch + 1) * len overflows
            }
            uint256 t = (epoch + 1) * len;
            uint256 wait = _grace + k * _fallbackAfter; // < 2^64 + 2^3 * 2^64: no overflow
            return t + wait >= t && nowS >= t + wait;
        }
    }

    function _minK(uint256 k, uint256 i, uint256 r, uint256 n) private pure returns (uint256) {
        unchecked {
            uint256 ki = (i + n - r) % n;
            return ki < k ? ki : k;
        }
    }

    function _isAnchorer(address who) private view returns (bool) {
        return who != address(0)
            && (who == _a0 || who == _a1 || who == _a2 || who == _a3 || who == _a4
                || who == _a5 || who == _a6 || who == _a7);
    }

    /// The root anchored for `epoch` if it is the newest, else zero: older roots are in the
    /// Anchored events.
    function rootOf(uint256 epoch) external view returns (bytes32) {
        bytes32 root = _root;
        return (root != bytes32(0) && epoch == _epoch) ? root : bytes32(0);
    }

    /// The newest (epoch, root); (0, 0) before the first anchor.
    function latest() external view returns (uint256 epoch, bytes32 root) {
        root = _root;
        epoch = root == bytes32(0) ? 0 : _epoch;
    }

    function anchorerList() external view returns (address[] memory list) {
        address[8] memory a = [_a0, _a1, _a2, _a3, _a4, _a5, _a6, _a7];
        list = new address[](_n);
        for (uint256 i = 0; i < list.length; ++i) {
            list[i] = a[i];
        }
    }

    function schedule() external view returns (uint256 epochLen, uint256 grace, uint256 fallbackAfter) {
        return (_epochLen, _grace, _fallbackAfter);
    }

    /// The block the contract was made in: where its events begin.
    function deployedAt() external view returns (uint256) {
        return _deployedAt;
    }

    // -- payees and claims -----------------------------------------------------------------

    /// Records `account`'s payee (an anchorer checked its signed binding statement).
    function bind(bytes32 account, address payee) external {
        require(_isAnchorer(msg.sender), "not_anchorer");
        uint256 s = _accounts[account];
        _accounts[account] = (s & ~_PAYEE_MASK) | uint256(uint160(payee));
        emit Bound(account, payee);
    }

    function payoutOf(bytes32 account) external view returns (address) {
        return address(uint160(_accounts[account]));
    }

    function claimed(bytes32 account) external view returns (uint256) {
        return _accounts[account] >> 160;
    }

    /// Pays `cumulative - claimed(account)` to the account's payee if `proof` shows
    /// (account, cumulative) under the newest root. Refusals, in this order: no_root,
    /// bad_proof, nothing_to_claim, unbound, unpaid.
    function claim(bytes32 account, uint256 cumulative, bytes32[] calldata proof) external {
        bytes32 root = _root;
        require(root != bytes32(0), "no_root");
        require(_fold(account, cumulative, proof) == root, "bad_proof");
        uint256 s = _accounts[account];
        uint256 done = s >> 160;
        require(cumulative > done, "nothing_to_claim");
        address payee = address(uint160(s));
        require(payee != address(0), "unbound");
        // More than 2^96 - 1 wei is more ether than exists: such a claim is never paid.
        require(cumulative <= _MAX_PAID, "unpaid");
        unchecked {
            uint256 paid = cumulative - done;
            _accounts[account] = (cumulative << 160) | uint256(uint160(payee));
            emit Claimed(account, payee, cumulative, paid);
            bool ok;
            assembly ("memory-safe") {
                ok := call(gas(), payee, paid, 0, 0, 0, 0)
            }
            require(ok, "unpaid");
        }
    }

    /// Whether `proof` shows (account, cumulative) under `root` (LGR-14).
    function verify(bytes32 root, bytes32 account, uint256 cumulative, bytes32[] calldata proof)
        external
        pure
        returns (bool)
    {
        return root != bytes32(0) && _fold(account, cumulative, proof) == root;
    }

    /// The root that `proof` folds the leaf of (account, cumulative) up to; zero for a proof
    /// of more than 64 hashes.
    function _fold(bytes32 account, uint256 cumulative, bytes32[] calldata proof)
        private
        pure
        returns (bytes32 h)
    {
        if (proof.length > _MAX_DEPTH) {
            return bytes32(0);
        }
        assembly ("memory-safe") {
            // The leaf: 0x00 || account || cumulative, 65 bytes at the free memory pointer.
            let p := mload(0x40)
            mstore(p, 0)
            mstore(add(p, 1), account)
            mstore(add(p, 33), cumulative)
            h := keccak256(p, 65)
            let i := proof.offset
            let end := add(i, shl(5, proof.length))
            for {} lt(i, end) { i := add(i, 0x20) } {
                let s := calldataload(i)
                // The smaller hash first: h goes to 0x20 when it is the greater.
                let hi := shl(5, gt(h, s))
                mstore(hi, h)
                mstore(xor(hi, 0x20), s)
                h := keccak256(0x00, 0x40)
            }
        }
    }
}
