//! Echo server on tokio-tungstenite, as its `autobahn-server` example writes it
//! (`accept_async_with_config`, `send` per message), with the size limits raised.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

async fn serve(tcp: TcpStream) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(tether_bench_peers::MAX_MESSAGE))
        .max_frame_size(Some(tether_bench_peers::MAX_MESSAGE));
    let mut ws = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await?;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    let addr = tether_bench_peers::addr();
    tether_bench_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("tokio-tungstenite echo on ws://{}", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let _ = serve(tcp).await;
            });
        }
    })
}
