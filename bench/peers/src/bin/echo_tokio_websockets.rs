//! Echo server on tokio-websockets, as its `autobahn_server` example writes it
//! (`ServerBuilder`, `send` per message), with the payload limit raised.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_websockets::{Limits, ServerBuilder};

async fn serve(tcp: TcpStream) -> Result<(), tokio_websockets::Error> {
    let (_request, mut ws) = ServerBuilder::new()
        .limits(Limits::default().max_payload_len(Some(tether_bench_peers::MAX_MESSAGE)))
        .accept(tcp)
        .await?;
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
        eprintln!("tokio-websockets echo on ws://{}", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let _ = serve(tcp).await;
            });
        }
    })
}
