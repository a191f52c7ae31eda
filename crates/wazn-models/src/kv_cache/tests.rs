//! The cache's block bookkeeping, prefix sharing, sliding-window freeing, number types
//! and keys-only layout.

use super::*;

/// The f32 blocks of a cache made with the default type.
fn f32_blocks(kv: LayerKv<'_>) -> LayerBlocks<'_, f32> {
    match kv {
        LayerKv::F32(blocks) => blocks,
        LayerKv::F16(_) => panic!("an f32 cache returned f16 blocks"),
    }
}

fn filled(cache: &mut KvCache, seq_id: SeqId, tokens: &[u32]) {
    let start = cache.seq_len(seq_id);
    assert!(cache.reserve(seq_id, tokens.len()));
    for pos in start..tokens.len() {
        for layer in 0..cache.layer_slots.len() {
            let key = vec![(pos * 10 + layer) as f32; cache.kv_width];
            let value = vec![-((pos * 10 + layer) as f32); cache.kv_width];
            cache.write(seq_id, layer, pos, &key, &value);
        }
    }
    cache.set_len(seq_id, tokens.len());
    cache.register_tokens(seq_id, tokens);
}

#[test]
fn blocks_come_back_and_prefixes_are_shared() {
    let mut cache = KvCache::new(2, 3, 256);
    cache.set_max_blocks(8);
    let prompt: Vec<u32> = (0..40).collect(); // 2 full blocks and 8 positions
    filled(&mut cache, 0, &prompt);
    assert_eq!(cache.usage().blocks_used, 3);

    // A second sequence with the same prompt reuses the two full blocks.
    assert_eq!(cache.attach_prefix(1, &prompt), 32);
    assert_eq!(cache.usage().blocks_used, 3);
    filled(&mut cache, 1, &prompt);
    assert_eq!(cache.usage().blocks_used, 4);
    // The first 40 rows of a sequence's blocks in layer 1, flattened.
    let rows = |cache: &KvCache, seq_id| {
        let LayerBlocks { keys, values } = f32_blocks(cache.layer_blocks(seq_id, 1, 40));
        let flat = |blocks: Vec<&[f32]>| -> Vec<f32> {
            let mut all: Vec<f32> = blocks.concat();
            all.truncate(40 * 3);
            all
        };
        (flat(keys), flat(values))
    };
    let (k0, v0) = rows(&cache, 0);
    let (k1, v1) = rows(&cache, 1);
    assert_eq!((k0.len(), &k0, &v0), (40 * 3, &k1, &v1));
    assert_eq!(k0[39 * 3], 391.0);

    cache.remove(0);
    cache.remove(1);
    let usage = cache.usage();
    assert_eq!((usage.blocks_used, usage.blocks_cached), (0, 2));
    assert_eq!(
        (usage.prefix_lookup_tokens, usage.prefix_hit_tokens),
        (40, 32)
    );

    // A prompt that differs in its second block shares only the first.
    let mut other = prompt.clone();
    other[20] = 999;
    assert_eq!(cache.attach_prefix(2, &other), 16);
    cache.remove(2);

    // Filling the pool evicts cached blocks; an over-full request fails.
    let long: Vec<u32> = (1000..1128).collect();
    filled(&mut cache, 3, &long);
    assert_eq!(cache.usage().blocks_used, 8);
    assert!(!cache.reserve(4, 1));
    assert_eq!(cache.attach_prefix(5, &prompt), 0);
    cache.remove(3);
    cache.remove(4);
    cache.remove(5);
    assert_eq!(cache.usage().blocks_used, 0);
}

#[test]
fn a_prompt_of_whole_blocks_leaves_its_last_token_to_compute() {
    let mut cache = KvCache::new(1, 2, 64);
    let prompt: Vec<u32> = (0..32).collect();
    filled(&mut cache, 0, &prompt);
    assert_eq!(cache.attach_prefix(1, &prompt), 16);
}

#[test]
fn sliding_layers_free_what_the_window_left_behind() {
    // Layer 0 slides over 20 positions, layer 1 sees everything.
    let mut cache = KvCache::with_sliding_window(2, 3, 1024, &[true, false], 20);
    let prompt: Vec<u32> = (0..200).collect();
    filled(&mut cache, 0, &prompt);
    let per_layer_block = 2 * KV_BLOCK_SIZE * 3 * 4;
    // 13 blocks of the full layer; the sliding layer keeps blocks 10..=12 (the
    // window 181..200 and one block of slack for prefixes ending at 176).
    assert_eq!(
        cache.bytes_allocated(),
        13 * per_layer_block + 3 * per_layer_block
    );
    let LayerBlocks { keys, .. } = f32_blocks(cache.layer_blocks(0, 0, 200));
    assert_eq!(keys[11][3 * (181 - 176)], 1810.0);
    assert!(keys[9].is_empty() && !keys[10].is_empty());

    // A second copy of the prompt reuses the 12 full blocks: the window of 192
    // (173..192) lies in the held blocks 10 and 11.
    assert_eq!(cache.attach_prefix(1, &prompt), 192);
    filled(&mut cache, 1, &prompt);
    let LayerBlocks { keys, .. } = f32_blocks(cache.layer_blocks(1, 0, 200));
    assert_eq!(keys[12][3 * (199 - 192)], 1990.0);

    // Truncation keeps a length whose window is held: 195 (window 176..195 in
    // blocks 11, 12); 150 would need block 8 and 9, which are gone, and so would
    // every shorter length but 0.
    cache.truncate(0, 195);
    assert_eq!(cache.seq_len(0), 195);
    cache.truncate(0, 150);
    assert_eq!(cache.seq_len(0), 0);
    cache.remove(0);
    cache.remove(1);

    // Without sliding layers nothing is freed.
    let mut plain = KvCache::new(2, 3, 1024);
    filled(&mut plain, 0, &prompt);
    assert_eq!(plain.bytes_allocated(), 13 * 2 * per_layer_block);
}

#[test]
fn a_cache_of_keys_only_holds_one_row_per_position_and_layer() {
    let (n_layer, width) = (3, 5);
    let mut cache = KvCache::keys_only(n_layer, width, 64);
    assert_eq!(cache.bytes_per_block(), n_layer * KV_BLOCK_SIZE * width * 4);
    let prompt: Vec<u32> = (0..20).collect(); // 2 blocks
    filled(&mut cache, 0, &prompt);
    assert_eq!(cache.bytes_allocated(), 2 * cache.bytes_per_block());
    for layer in 0..n_layer {
        let LayerBlocks { keys, values } = f32_blocks(cache.layer_blocks(0, layer, 20));
        assert!(values.iter().all(|v| v.is_empty()));
        let keys: Vec<f32> = keys.concat();
        for pos in 0..20 {
            let want = (pos * 10 + layer) as f32;
            assert_eq!(
                keys[pos * width..(pos + 1) * width],
                [want; 5],
                "layer {layer}"
            );
        }
    }
}

#[test]
fn an_f16_cache_rounds_once_and_takes_half_the_bytes() {
    let prompt: Vec<u32> = (0..40).collect();
    let mut wide = KvCache::new(2, 3, 64);
    filled(&mut wide, 0, &prompt);
    let mut half = KvCache::new(2, 3, 64).with_dtype(KvDtype::F16);
    assert_eq!(half.dtype(), KvDtype::F16);
    assert!(half.reserve(0, 40));
    let key = [1.0f32 / 3.0, -2.5e-3, 70000.0];
    half.write(0, 1, 33, &key, &[0.1, 0.2, 0.3]);
    half.set_len(0, 40);
    assert_eq!(half.bytes_allocated() * 2, wide.bytes_allocated());
    assert_eq!(half.bytes_per_block(), 2 * 2 * KV_BLOCK_SIZE * 3 * 2);
    assert_eq!(wide.bytes_per_block(), 2 * half.bytes_per_block());
    let LayerKv::F16(blocks) = half.layer_blocks(0, 1, 40) else {
        panic!("an f16 cache returned f32 blocks");
    };
    let stored: Vec<f32> = blocks.keys[2][3..6].iter().map(|x| x.to_f32()).collect();
    let want: Vec<f32> = key.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
    assert_eq!(stored, want);
    // A type set on a cache already in use is ignored.
    assert_eq!(half.with_dtype(KvDtype::F32).dtype(), KvDtype::F16);
}
